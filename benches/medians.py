#!/usr/bin/env python3
"""Median time and rate of every criterion benchmark, as markdown tables.

Usage: [CARGO_TARGET_DIR=target] [SINCE=unix-seconds] benches/medians.py [group-prefix ...]
"""
import json, os, sys, collections
root=os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'criterion')
rows=[]
# Only estimates newer than $SINCE (unix seconds; default 0: all).
START=float(os.environ.get('SINCE', '0'))
for dp, dn, fn in os.walk(root):
    if dp.endswith('/new') and 'estimates.json' in fn and 'benchmark.json' in fn and os.path.getmtime(os.path.join(dp,'estimates.json')) > START:
        est=json.load(open(os.path.join(dp,'estimates.json')))
        bm=json.load(open(os.path.join(dp,'benchmark.json')))
        med=est['median']['point_estimate']  # ns
        thr=bm.get('throughput') or {}
        el=thr.get('Elements') or thr.get('Bytes') or 1
        rows.append((bm['group_id'], bm.get('function_id') or '', bm.get('value_str') or '', med, el))
def fmt_t(ns):
    for u,d in (('s',1e9),('ms',1e6),('µs',1e3)):
        if ns>=d: return f'{ns/d:.3g} {u}'
    return f'{ns:.3g} ns'
def fmt_r(r):
    for u,d in (('G',1e9),('M',1e6),('K',1e3)):
        if r>=d: return f'{r/d:.3g} {u}/s'
    return f'{r:.3g} /s'
groups=collections.defaultdict(list)
for g,f,v,med,el in rows: groups[g].append((f,v,med,el))
want=sys.argv[1:] 
for g in sorted(groups):
    if want and not any(g.startswith(w) for w in want): continue
    print(f'\n### {g}\n')
    print('| id | size | median time | median rate |')
    print('|---|---|---|---|')
    items=sorted(groups[g], key=lambda x:(int(x[1]) if x[1].isdigit() else 0, x[0]))
    for f,v,med,el in items:
        print(f'| {f} | {v} | {fmt_t(med)} | {fmt_r(el*1e9/med)} |')
