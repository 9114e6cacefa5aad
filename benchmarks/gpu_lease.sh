#!/usr/bin/env bash
# One GPU lease's work, as one prepared command (a lent GPU machine has PyTorch with CUDA but not MONAI, pydantic or
# Optuna, no package index, and receives the checkout's files without its git repository).
#
#   benchmarks/gpu_lease.sh prepare WHEEL_DIR   # here, on a clean commit: wheels, file hashes and the commit into
#                                               # .gpu-wheels/ (git-ignored; the device call carries it)
#   benchmarks/gpu_lease.sh run MINUTES JOB...  # there: install the wheels, check every file against the commit's
#                                               # hashes, run the jobs, and pack the results into $OUT/results.tgz
#
# Jobs (each stops in time for the packing):
#   perf             the perf scripts on CUDA (penalty overhead at 224 px / batch 128 / bf16, engine against a
#                    plain loop, peak memory)
#   original_setup   the original write-up's setup (pneumoniamnist_original_setup): its 12-point grid tuned on
#                    validation by parallel `medvp tune` workers sharing one Optuna study, the cross-entropy arm
#                    beside it, then the tuned penalty arm (appends arm_settings to the spec copy)
#   original_vp_seeds=S,T   only the listed seeds of the tuned penalty arm, with the committed arm_settings
#   tune=SPEC:N,...  the tuned arms' searches (TUNED_ARMS below) of each SPEC at subset size N, in that order of
#                    priority, several `medvp tune` workers per study, as many workers as there are CPU cores
#                    (1 thread each); run folders on tmpfs (`medvp tune` deletes a trial's checkpoints once it
#                    is scored or pruned: the searches only read a run's best validation value); a study that
#                    has not reached its completed trials by the deadline is stopped and packed as it stands:
#                    carry runs/gpu_tuning to the next lease
#                    and the same job resumes it (a killed worker's trial is marked failed by its heartbeat)
# Results name the commit through MEDVP_COMMIT (pipeline/experiments/provenance.py), which is set only after the
# hash check passed. Unpack results.tgz in the repository root; searches land in runs/gpu_tuning/SPEC/n_N/.
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
# a command that is stopped 10 s before the deadline
until_deadline() { timeout $(( $(seconds_left) - 10 )) "$@"; }

perf() {
  timeout 150 python3 benchmarks/perf/penalty_overhead.py --device cuda
  timeout 100 python3 benchmarks/perf/engine_overhead.py --device cuda
}

# The original setup: tune the grid with 6 workers while the cross-entropy arm's 10 seeds run, then the tuned arm.
original_setup() {
  local spec=benchmarks/specs/pneumoniamnist_original_setup.yaml tuned=runs/tuning/original_setup pids=() k
  local tune=(python3 -m pipeline tune --spec "$spec" --arm original_setup_vp --out "$tuned")
  "${tune[@]}" --worker 0 > "$OUT/tune_1.log" 2>&1 & pids+=($!)
  sleep 20  # the first worker creates the study; concurrent creation in one SQLite file can collide
  for k in 2 3 4 5 6; do "${tune[@]}" --worker $((k - 1)) > "$OUT/tune_$k.log" 2>&1 & pids+=($!); done
  for k in $(seq 1 10); do
    until_deadline python3 -m pipeline benchmark "$spec" --arms original_setup_ce \
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
    until_deadline python3 -m pipeline benchmark "$spec" --arms original_setup_vp \
      --shard "$k/10" > "runs/vp_$k.log" 2>&1 &
  done
  wait
}

# Only the given seeds of the tuned penalty arm (the spec's committed arm_settings), one process a seed.
original_vp_seeds() {
  local spec=benchmarks/specs/pneumoniamnist_original_setup.yaml seed
  [ "$(seconds_left)" -gt 180 ] || { echo "original_vp_seeds: under 3 minutes left: not started"; return; }
  for seed in ${1//,/ }; do
    until_deadline python3 -m pipeline benchmark "$spec" --arms original_setup_vp \
      --seeds "$seed" > "runs/vp_seed_$seed.log" 2>&1 &
  done
}

# CPU cores this machine lets us use (nproc reads OMP_NUM_THREADS, which is 1 here, and would say 1)
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }

alive() { local n=0 pid; for pid in "$@"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done; echo "$n"; }

# The searches of every tuned arm of each SPEC:N, in priority order: a study gets up to 4 workers (the second one
# 20 s after the first: concurrent creation of one SQLite study can collide) before the next study gets any.
tune() {
  local root=/dev/shm/medvp_tuning slots=0 pending per_study=4 studies=() key spec n arm out live pid
  [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 20000000 ] 2>/dev/null || root=$PWD/runs/tmp_tuning
  for key in ${1//,/ }; do
    spec=benchmarks/specs/${key%%:*}.yaml n=${key#*:}
    for arm in $(python3 -c "import sys; from pathlib import Path; from pipeline.experiments import load_spec
from pipeline.experiments.spec import TUNED_ARMS; print(*[a for a in load_spec(Path(sys.argv[1])).arms if a in TUNED_ARMS])" "$spec"); do
      studies+=("$spec:$n:$arm")
    done
  done
  # searches carried from an earlier lease (carry=["runs/gpu_tuning"]) go on where they stopped
  [ -d runs/gpu_tuning ] && mkdir -p "$root" && cp -rn runs/gpu_tuning/. "$root"/
  echo "tune: ${#studies[@]} studies, $(cores) cores, run folders in $root"
  declare -A workers first launches
  while [ "$(seconds_left)" -gt 30 ]; do
    slots=$(( $(cores) - $(alive ${background_pids[@]+"${background_pids[@]}"}) ))
    pending=0
    for key in "${studies[@]}"; do
      IFS=: read -r spec n arm <<< "$key"
      out=$root/$(basename "$spec" .yaml)/n_$n
      [ -f "$out/best_$arm.json" ] && continue
      # shellcheck disable=SC2086
      live=$(alive ${workers[$key]:-})
      [ "$live" -gt 0 ] || [ "${launches[$key]:-0}" -lt $(( 2 * per_study )) ] && pending=$((pending + 1))
      while [ "$live" -lt "$per_study" ] && [ "$(alive ${tune_pids[@]+"${tune_pids[@]}"})" -lt "$slots" ] \
            && [ "${launches[$key]:-0}" -lt $(( 2 * per_study )) ]; do
        [ "$live" -gt 0 ] && [ $(( $(date +%s) - ${first[$key]} )) -lt 20 ] && break
        [ "$live" -eq 0 ] && first[$key]=$(date +%s)
        mkdir -p "$out"
        python3 -m pipeline tune --spec "$spec" --arm "$arm" --n "$n" --out "$out" --quiet \
          --worker "${launches[$key]:-0}" >> "$OUT/tune_$(basename "$spec" .yaml)_n${n}_$arm.log" 2>&1 &
        pid=$!; workers[$key]="${workers[$key]:-} $pid"; tune_pids+=("$pid")
        launches[$key]=$(( ${launches[$key]:-0} + 1 )); live=$((live + 1))
      done
      # a study short of workers (and not given up after 2 x per_study launches): the next ones wait
      [ "$live" -lt "$per_study" ] && [ "${launches[$key]:-0}" -lt $(( 2 * per_study )) ] && break
    done
    [ "$pending" -eq 0 ] && break  # every study finished (or gave up after its launches)
    sleep 5
  done
  kill ${tune_pids[@]+"${tune_pids[@]}"} 2>/dev/null; wait ${tune_pids[@]+"${tune_pids[@]}"} 2>/dev/null
  mkdir -p runs/gpu_tuning
  [ -d "$root" ] && (cd "$root" && find . \( -name 'best_*.json' -o -name 'trials_*.csv' -o -name 'optuna_*.db' \) -print0 \
     | tar cf - --null -T -) | tar xf - -C runs/gpu_tuning
  ls -R runs/gpu_tuning | head -60
}

run() {
  deadline=$(( $(date +%s) + $1 * 60 )); shift
  local site job; site=$(mktemp -d)
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$carried"/*.whl || return 3
  export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
  sha256sum -c --quiet "$carried/manifest.sha256" || { echo "files differ from commit $(cat "$carried/commit")"; return 4; }
  # The copy can hold a git repository that is not this commit's (on 2026-12-04 it showed pipeline/ as changed):
  # hide it, so that provenance reads the checked commit from MEDVP_COMMIT instead of git's idea of HEAD.
  export GIT_DIR=/nonexistent MEDVP_COMMIT; MEDVP_COMMIT=$(cat "$carried/commit")
  mkdir -p runs
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  background_pids=() tune_pids=()
  for job in "$@"; do
    case $job in
      perf) perf ;;
      original_setup) original_setup ;;
      original_vp_seeds=*) original_vp_seeds "${job#*=}"; background_pids+=($(jobs -p)) ;;
      tune=*) tune "${job#*=}" ;;
      *) echo "unknown job $job" >&2 ;;
    esac
  done
  wait
  tail -n 3 runs/*.log 2>/dev/null
  tar czf "$OUT/results.tgz" --ignore-failed-read benchmarks/results/perf/*_cuda.json \
    benchmarks/results/pneumoniamnist_original_setup benchmarks/specs/pneumoniamnist_original_setup.yaml \
    runs/tuning/original_setup runs/gpu_tuning runs/*.log 2>/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # not when sourced (a local trial of one job)
case ${1:-} in
  prepare) prepare "${2:?usage: gpu_lease.sh prepare WHEEL_DIR}" ;;
  run) shift; run "${1:?usage: gpu_lease.sh run MINUTES JOB...}" "${@:2}" ;;
  *) echo "usage: gpu_lease.sh prepare WHEEL_DIR | run MINUTES JOB..." >&2; exit 2 ;;
esac
fi
