#!/usr/bin/env bash
# The fuzzing campaign: one target at a time under nice -n 19 (one core),
# each for its budget in seconds; a target that stops on a finding is
# restarted for the rest of its budget (its artifacts stay in artifacts/).
# Usage: [SANITIZER=none|address] ./run_campaign.sh [target=seconds ...]
# (default: none, i.e. cargo fuzz -s none; overflow checks and debug
# assertions are on either way, -O -a).
set -u
cd "$(dirname "$0")"
plan=("$@")
if [ ${#plan[@]} -eq 0 ]; then
  plan=(entry_codec=540 note_checkpoint=540 tile_path=420 merkle_proofs=540
        map_proof=480 map_tree=360 status_proof=600 status_mutate=600
        audit_replay=540)
fi
san=${SANITIZER:-none}
mkdir -p logs
for item in "${plan[@]}"; do
  t=${item%%=*}; budget=${item#*=}
  mkdir -p "corpus/$t" "artifacts/$t"
  dict=(); [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  start=$(date +%s); attempt=0
  while :; do
    left=$(( budget - ($(date +%s) - start) ))
    [ "$left" -lt 20 ] && break
    attempt=$((attempt + 1))
    echo "$(date -u +%FT%TZ) $t attempt $attempt for ${left}s (sanitizer $san)" | tee -a logs/campaign.txt
    RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run -O -a -s "$san" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$left" -rss_limit_mb=2048 -print_final_stats=1 -max_len=8192 \
      -artifact_prefix="artifacts/$t/" "${dict[@]}" > "logs/$t.$attempt.log" 2>&1
    echo "$(date -u +%FT%TZ) $t attempt $attempt exit $?" | tee -a logs/campaign.txt
  done
done
echo "$(date -u +%FT%TZ) campaign done" | tee -a logs/campaign.txt
