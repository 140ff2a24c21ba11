#!/usr/bin/env bash
# Submission alone, with where the time goes: a fresh node, 50,000 events
# to warm up, then EVENTS (default 200,000) at PER (50) events per POST
# from C (16) clients. Prints events/s and latency, the sequencer thread's
# share of the timed part on a core and runnable-but-waiting
# (/proc/<pid>/task/<tid>/schedstat), the node's CPU and minor page faults
# per event, its anonymous RSS, and the machine's idle and steal time.
#
#   cargo build --release && benches/submit.sh target/release/revledger [TAG] [EVENTS]
#
# Not part of CI. Node and load generator share this machine.
set -euo pipefail
BIN=${1:?usage: benches/submit.sh path/to/revledger [tag] [events]}
TAG=${2:-run}
N=${3:-200000}
PORT=${PORT:-18111}
D=$(mktemp -d "/tmp/revledger-submit-$TAG.XXXX")
# shellcheck disable=SC2086 # SERVE_ARGS: extra flags for `serve`, split on spaces
"$BIN" serve --data "$D/node" --listen "127.0.0.1:$PORT" ${SERVE_ARGS:-} > "$D/serve.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/checkpoint" > /dev/null && break; sleep 0.1; done
lg() { "$BIN" loadgen --node "http://127.0.0.1:$PORT" --key "$D/node/submitter.key" "$@" 2>&1 | grep -v '^$'; }
lg --events 50000 --concurrency 16 --per-request 50 > /dev/null
SEQ=$(dirname "$(grep -lx sequencer /proc/$SP/task/*/comm | head -1)")
snap() { echo "$(head -1 /proc/stat | cut -d' ' -f2-) | $(cut -d' ' -f1-2 "$SEQ/schedstat") | $(awk '{print $14 + $15, $10}' /proc/$SP/stat)"; }
before=$(snap)
r=$(lg --events "$N" --concurrency "${C:-16}" --per-request "${PER:-50}" | grep '^submit:')
after=$(snap)
anon=$(awk '/RssAnon/ {print $2}' /proc/$SP/status)
python3 - "$TAG" "$N" "$r" "$before" "$after" "$anon" "$(getconf CLK_TCK)" <<'PY'
import re, sys
tag, n, r, before, after, anon, hz = sys.argv[1:]
n, hz = int(n), int(hz)
secs = float(re.search(r', ([\d.]+)s:', r).group(1))
rate = re.search(r's: (\d+) items/s', r).group(1)
lat = re.search(r'p50 ([\d.]+ ms), p99 ([\d.]+ ms)', r)
def parse(s):
    m, q, p = [x.split() for x in s.split('|')]
    return [int(x) for x in m], [int(x) for x in q], [int(x) for x in p]
(m0, q0, p0), (m1, q1, p1) = parse(before), parse(after)
d = [b - a for a, b in zip(m0, m1)]
total = sum(d)
print(f"{tag}: {rate} events/s, p50 {lat.group(1)}, p99 {lat.group(2)}; "
      f"sequencer on a core {100 * (q1[0] - q0[0]) / 1e9 / secs:.0f} %, waiting for one {100 * (q1[1] - q0[1]) / 1e9 / secs:.0f} %; "
      f"node CPU {(p1[0] - p0[0]) * 1e6 / hz / n:.0f} us/event, {(p1[1] - p0[1]) / n:.2f} faults/event, RssAnon {int(anon) // 1024} MiB; "
      f"machine idle {100 * (d[3] + d[4]) / total:.0f} %, steal {100 * d[7] / total:.0f} %")
PY
