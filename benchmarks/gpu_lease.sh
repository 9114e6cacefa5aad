#!/usr/bin/env bash
# One GPU lease's work, as one prepared command (a lent GPU machine has PyTorch with CUDA but not MONAI, pydantic or
# Optuna, no package index, and receives the checkout's files without its git repository).
#
#   benchmarks/gpu_lease.sh prepare WHEEL_DIR   # here, on a clean commit: wheels, file hashes and the commit into
#                                               # .gpu-wheels/ (git-ignored; the device call carries it)
#   benchmarks/gpu_lease.sh run MINUTES         # there: install the wheels, check every file against the commit's
#                                               # hashes, then measure, stopping in time to pack the results into
#                                               # $OUT/results.tgz (unpack it in the repository root)
#
# What `run` measures, in order: the perf scripts on CUDA (penalty overhead at 224 px / batch 128 / bf16, engine
# against a plain loop, peak memory), then the original write-up's setup (pneumoniamnist_original_setup): its
# 12-point grid tuned on validation by parallel `medvp tune` workers sharing one Optuna study, the cross-entropy arm
# beside it, then the tuned penalty arm, several runs at once on the card. Results name the commit through
# MEDVP_COMMIT (pipeline/experiments/provenance.py), which is set only after the hash check passed.
set -uo pipefail
carried=.gpu-wheels
checked=(pipeline benchmarks/perf benchmarks/specs benchmarks/gpu_lease.sh configs pyproject.toml)

prepare() {
  local wheels=$1
  if [ -n "$(git status --porcelain -- "${checked[@]}")" ]; then
    echo "gpu_lease.sh prepare: uncommitted changes under ${checked[*]}: commit them first" >&2; return 2
  fi
  rm -rf "$carried" && mkdir -p "$carried"
  cp "$wheels"/*.whl "$carried"/
  git ls-files -z -- "${checked[@]}" | xargs -0 sha256sum > "$carried/manifest.sha256"
  git rev-parse HEAD > "$carried/commit"
  echo "prepared $carried: $(ls "$carried"/*.whl | wc -l) wheels, $(wc -l < "$carried/manifest.sha256") files" \
       "at commit $(cat "$carried/commit")"
}

seconds_left() { echo $(( deadline - $(date +%s) )); }

perf() {
  timeout 150 python3 benchmarks/perf/penalty_overhead.py --device cuda
  timeout 100 python3 benchmarks/perf/engine_overhead.py --device cuda
}

# The original setup: tune the grid with 6 workers while the cross-entropy arm's 10 seeds run, then the tuned arm.
original_setup() {
  local spec=benchmarks/specs/pneumoniamnist_original_setup.yaml tuned=runs/tuning/original_setup pids=() k
  local tune=(python3 -m pipeline tune --spec "$spec" --arm original_setup_vp --out "$tuned")
  "${tune[@]}" > "$OUT/tune_1.log" 2>&1 & pids+=($!)
  sleep 20  # the first worker creates the study; concurrent creation in one SQLite file can collide
  for k in 2 3 4 5 6; do "${tune[@]}" > "$OUT/tune_$k.log" 2>&1 & pids+=($!); done
  for k in $(seq 1 10); do
    timeout $(( $(seconds_left) - 10 )) python3 -m pipeline benchmark "$spec" --arms original_setup_ce \
      --shard "$k/10" > "runs/ce_$k.log" 2>&1 &
  done
  while kill -0 "${pids[@]}" 2>/dev/null && [ "$(seconds_left)" -gt 100 ]; do sleep 5; done
  kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}"  # a worker still training at 100 s left loses that trial
  python3 - "$spec" "$tuned/best_original_setup_vp.json" <<'EOF' || return 1
import json, sys
from pathlib import Path
spec, best = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
spec.write_text(spec.read_text() + "arm_settings:\n  original_setup_vp: " + json.dumps(best["params"]) + "\n")
print("arm_settings.original_setup_vp:", best["params"], "validation AUC", best["best_value"])
EOF
  for k in $(seq 1 10); do
    timeout $(( $(seconds_left) - 10 )) python3 -m pipeline benchmark "$spec" --arms original_setup_vp \
      --shard "$k/10" > "runs/vp_$k.log" 2>&1 &
  done
  wait
}

run() {
  deadline=$(( $(date +%s) + $1 * 60 ))
  local site; site=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$carried"/*.whl || return 3
  export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
  sha256sum -c --quiet "$carried/manifest.sha256" || { echo "files differ from commit $(cat "$carried/commit")"; return 4; }
  # The copy can hold a git repository that is not this commit's (on 2026-12-04 it showed pipeline/ as changed):
  # hide it, so that provenance reads the checked commit from MEDVP_COMMIT instead of git's idea of HEAD.
  export GIT_DIR=/nonexistent MEDVP_COMMIT; MEDVP_COMMIT=$(cat "$carried/commit")
  mkdir -p runs
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  perf
  OMP_NUM_THREADS=1 original_setup
  tail -n 3 runs/ce_*.log runs/vp_*.log
  tar czf "$OUT/results.tgz" benchmarks/results/perf/*_cuda.json benchmarks/results/pneumoniamnist_original_setup \
    benchmarks/specs/pneumoniamnist_original_setup.yaml runs/tuning/original_setup/*.json \
    runs/tuning/original_setup/*.csv runs/*.log
}

case ${1:-} in
  prepare) prepare "${2:?usage: gpu_lease.sh prepare WHEEL_DIR}" ;;
  run) run "${2:?usage: gpu_lease.sh run MINUTES}" ;;
  *) echo "usage: gpu_lease.sh prepare WHEEL_DIR | run MINUTES" >&2; exit 2 ;;
esac
