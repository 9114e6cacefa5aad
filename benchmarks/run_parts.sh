#!/usr/bin/env bash
# Run one part of a benchmark: PROCESSES shards of SPEC at once (on one GPU they share the card), each starting no
# new run after MINUTES. Finished (arm, seed) runs are skipped, so calling this again continues the benchmark, and
# every part adds to the same results folder. Appends the part's throughput (runs per minute) as a JSON line to
# RESULTS/parts.jsonl.  usage: benchmarks/run_parts.sh SPEC PROCESSES MINUTES
set -euo pipefail
spec=$1; processes=$2; minutes=$3
results=$(python -c "import sys; from pathlib import Path; from pipeline.experiments import load_spec; print(load_spec(Path(sys.argv[1])).results)" "$spec")
count() { find "$results" -name 'seed_*.json' 2>/dev/null | wc -l; }
mkdir -p "$results"; before=$(count); started=$(date +%s)
for k in $(seq 1 "$processes"); do
  python -m pipeline benchmark "$spec" --shard "$k/$processes" --time-limit "$minutes" > "$results/part_shard$k.log" 2>&1 &
done
status=0; wait || status=$?
after=$(count); seconds=$(( $(date +%s) - started ))
device=$(python -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
printf '{"spec": "%s", "processes": %d, "minutes_limit": %s, "seconds": %d, "runs_finished": %d, "runs_per_minute": %.3f, "device": "%s", "exit": %d}\n' \
  "$spec" "$processes" "$minutes" "$seconds" "$((after - before))" "$(python -c "print(($after - $before) * 60 / max($seconds, 1))")" "$device" "$status" | tee -a "$results/parts.jsonl"
exit $status
