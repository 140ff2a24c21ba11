#!/usr/bin/env bash
# The HTTP figures of BENCHMARKS.md: a fresh node, then the load generator
# (submissions at 1 and at 50 events per POST, hash tiles, status proofs),
# then a full audit of what was written. Server CPU per event is read from
# /proc/<pid>/stat before and after each phase.
#
#   cargo build --release && benches/http.sh target/release/revledger [TAG]
#
# Not part of CI. Node, load generator and auditor share this machine.
set -euo pipefail
BIN=${1:?usage: benches/http.sh path/to/revledger [tag]}
TAG=${2:-run}
D=$(mktemp -d "/tmp/revledger-http-$TAG.XXXX")
PORT=${PORT:-18090}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in ticks
TICK_US=$((1000000 / $(getconf CLK_TCK)))
"$BIN" serve --data "$D/node" --listen "127.0.0.1:$PORT" > "$D/serve.log" 2>&1 &
SP=$!
# The data dir is removed afterwards unless KEEP=1.
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/checkpoint" > /dev/null && break; sleep 0.1; done
echo "== $TAG $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) data $D"
lg() { "$BIN" loadgen --node "http://127.0.0.1:$PORT" --key "$D/node/submitter.key" "$@" 2>&1 | grep -v '^$'; }
c0=$(cpu $SP)
lg --events 20000 --concurrency 64 --per-request 1
c1=$(cpu $SP)
echo "server CPU per event (1 per POST): $(( (c1 - c0) * TICK_US / 20000 )) us"
lg --events 100000 --concurrency 16 --per-request 50 --tile-reads 5000
c2=$(cpu $SP)
echo "server CPU per event (50 per POST; the 5,000 tile reads included): $(( (c2 - c1) * TICK_US / 100000 )) us"
# Reads: status proofs for the 2,000 credentials this run issues (random
# paths in a map of ~122,000). STATUS_READS=100000 gives a steadier figure.
STATUS_READS=${STATUS_READS:-20000}
lg --events 2000 --concurrency 16 --per-request 50 --status-reads "$STATUS_READS"
c3=$(cpu $SP)
echo "server CPU per status proof (incl. issuing 2,000): $(( (c3 - c2) * TICK_US / STATUS_READS )) us"
echo "node RSS: $(grep VmRSS /proc/$SP/status | tr -s ' ')"
/usr/bin/time -f "audit: wall %e s, user %U s, sys %S s, max RSS %M KB" \
    "$BIN" audit --node "http://127.0.0.1:$PORT" --vkey "$D/node/log.vkey" --state "$D/audit" 2>&1 \
    | tr '\r' '\n' | grep -E '^(ok|audit|error)'
