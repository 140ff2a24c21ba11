#!/usr/bin/env bash
# The scale run through the node itself: one `revledger serve` data dir
# filled over HTTP to TOTAL events (default 10,000,000) at 50 events per
# POST from 16 clients, in parts of at most 1,000,000 (the load generator
# signs each part before it sends it). At each milestone (10^4, 10^5, 10^6,
# then every 10^6) it prints the node's memory (RssAnon, RssFile, VmHWM),
# the data dir's bytes per entry, the part's events/s, the node's CPU per
# event in the part (and that of fjall's worker thread), and status proofs
# (20,000 reads of fresh credentials: rate, p50, p99). Then it stops the
# node, restarts it, and prints the time to its first /checkpoint, its
# memory, and status proofs again.
#
#   cargo build --release && benches/scale-http.sh target/release/revledger [TOTAL]
#
# Not part of CI: 10^7 events took 15 minutes and 3.5 GB of disk on a 2-core
# machine (2026-12-04).
# The load generator shares the machine. DATA=dir keeps the data dir
# (default: a temporary one, removed at the end).
set -euo pipefail
BIN=${1:?usage: benches/scale-http.sh path/to/revledger [total]}
TOTAL=${2:-10000000}
PORT=${PORT:-18444}
URL="http://127.0.0.1:$PORT"
D=${DATA:-$(mktemp -d /tmp/revledger-scale-http.XXXX)}
mkdir -p "$D"
SP=
start() {
    local t0
    t0=$(date +%s%N)
    "$BIN" serve --data "$D/node" --listen "127.0.0.1:$PORT" --submitter-rate 0 >> "$D/serve.log" 2>&1 &
    SP=$!
    for _ in $(seq 600); do curl -sf "$URL/checkpoint" > /dev/null && break; sleep 0.01; done
    START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$SP" 2>/dev/null || true; wait "$SP" 2>/dev/null || true; }
trap 'stop; [ -n "${DATA:-}" ] || rm -rf "$D"' EXIT
lg() { "$BIN" loadgen --node "$URL" --key "$D/node/submitter.key" --concurrency 16 --per-request 50 "$@" 2>&1; }
mem() { grep -E '^(RssAnon|RssFile|VmHWM)' "/proc/$SP/status" | awk '{printf "%s %d MiB, ", $1, $2 / 1024}'; }
size() { curl -sf "$URL/checkpoint" | sed -n 2p; }
# CPU ticks (user + system) of the node, and of fjall's worker threads.
ticks() { awk '{print $14 + $15}' "/proc/$SP/stat"; }
fjall_ticks() {
    cat /proc/"$SP"/task/*/stat 2>/dev/null | grep 'fjall:worker' | awk '{s += $14 + $15} END {print s + 0}'
}
reads() {
    lg --events 1000 --status-reads 20000 | grep '^status:' \
        | sed -E 's/.*s: ([0-9]+) items\/s.*p50 ([0-9.]+ ms), p99 ([0-9.]+ ms).*/status proofs \1\/s, p50 \2, p99 \3/'
}
start
echo "== $(date -u +%FT%TZ) $BIN, data $D, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
done_events=0
for m in 10000 100000 $(seq 1000000 1000000 "$TOTAL"); do
    [ "$m" -le "$TOTAL" ] || break
    part=$((m - done_events))
    t0=$(ticks); f0=$(fjall_ticks)
    r=$(lg --events "$part" | grep '^submit:' | sed -E 's/.*s: ([0-9]+) items\/s.*/\1/')
    cpu=$(( ($(ticks) - t0) * 1000000 / $(getconf CLK_TCK) / part ))
    fcpu=$(( ($(fjall_ticks) - f0) * 1000000 / $(getconf CLK_TCK) / part ))
    done_events=$m
    n=$(size)
    bytes=$(du -sb "$D/node" | cut -f1)
    echo "$m events (tree size $n): part at $r events/s, node CPU $cpu µs/event (fjall's worker $fcpu); $(mem)disk $((bytes / n)) B/entry; $(reads)"
done
stop
start
echo "restart: $START_MS ms to the first /checkpoint (tree size $(size)); $(mem)"
echo "after restart: $(reads); $(mem)"
