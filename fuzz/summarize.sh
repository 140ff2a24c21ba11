#!/usr/bin/env bash
# Prints one results-table row per target from the campaign logs:
# executions (sum of stat::number_of_executed_units over the attempts),
# exec/s (executions / seconds fuzzed), final cov/ft from the last DONE line,
# corpus size (files in corpus/<target>), findings (files in artifacts/<target>).
cd "$(dirname "$0")"
printf '| target | time fuzzed (s) | executions | exec/s | cov | ft | corpus (files) | findings |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for t in "$@"; do
  execs=0; secs=0; cov=; ft=
  for log in logs/$t.*.log; do
    [ -f "$log" ] || continue
    e=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    execs=$((execs + ${e:-0}))
    s=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 | awk '{print $5}')
    secs=$((secs + ${s:-0}))
    last=$(grep -E '#[0-9]+\s+(DONE|NEW|REDUCE|pulse|INITED)' "$log" | tail -1)
    c=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}'); [ -n "$c" ] && cov=$c
    f=$(echo "$last" | grep -oE 'ft: [0-9]+' | awk '{print $2}'); [ -n "$f" ] && ft=$f
  done
  corpus=$(find corpus/$t -type f 2>/dev/null | wc -l)
  finds=$(find artifacts/$t -type f 2>/dev/null | wc -l)
  rate=$([ "$secs" -gt 0 ] && echo $((execs / secs)) || echo -)
  printf '| `%s` | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$secs" "$execs" "$rate" "$cov" "$ft" "$corpus" "$finds"
done
