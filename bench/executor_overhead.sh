#!/usr/bin/env bash
# Per-instance overhead of the executors on a grid of trivial stages, side by side in one
# run (docs/benchmarks.md, "Executors"): `inline` (threads of one process), `local` (a
# child process per attempt) and `slurm` (a batch job per attempt, on the single-node
# Slurm of tests/infra/slurm-up.sh, which this script starts and stops).
#
#   bench/executor_overhead.sh [INSTANCES] [ROUNDS]
#
# Each measurement is a fresh workspace running INSTANCES (default 50) `command` stages
# that each write one small file, once with `--jobs 1` (latency: seconds per instance,
# everything sequential) and once with the default `--jobs` (throughput). Rounds rotate
# the executors' order. Needs target/debug/slayer (cargo build; or $SLAYER), and the
# Slurm packages (.ci/run installs them).
set -euo pipefail
n=${1:-50}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
slayer=${SLAYER:-${CARGO_TARGET_DIR:-$root/target}/debug/slayer}
work=$(mktemp -d /tmp/executor-bench.XXXXXX)
# The same directory as the tests: one cluster at a time (fixed ports), restarted here.
export SLURM_LOCAL_DIR=/tmp/slayer-test-slurm
eval "$(bash "$root/tests/infra/slurm-up.sh" | grep '^export ')"
trap 'bash "$root/tests/infra/slurm-up.sh" down >/dev/null; rm -rf "$work"' EXIT

values=$(seq -s, 1 "$n")
manifest="grid: {i: [$values]}
stages:
  cell:
    kind: command
    with: {run: \"echo \${grid.i} > \$SLAYER_OUT/o\", outputs: {o: o}}
"

measure() { # measure EXECUTOR JOBS -> seconds for the whole run
  local ws
  ws=$(mktemp -d "$work/ws.XXXXXX")
  printf '%s' "$manifest" > "$ws/slayer.yaml"
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$ws" && "$slayer" run -q --executor "$1" --jobs "$2") >/dev/null
  t1=$(date +%s.%N)
  local ran
  ran=$(ls "$ws/.slayer/runs" | wc -l)
  [ "$ran" = "$n" ] || { echo "$1: only $ran of $n instances recorded" >&2; exit 1; }
  rm -rf "$ws"
  awk "BEGIN{print $t1 - $t0}"
}

declare -A results
executors=(inline local slurm)
for r in $(seq "$rounds"); do
  for k in $(seq 0 2); do
    e=${executors[$(( (k + r) % 3 ))]}
    for jobs in 1 0; do
      s=$(measure "$e" "$jobs")
      results[$e-$jobs]+="$s "
      printf 'round %d  %-6s --jobs %d  %6.2f s  (%.3f s per instance)\n' "$r" "$e" "$jobs" "$s" \
        "$(awk "BEGIN{print $s / $n}")"
    done
  done
done
echo
echo "median [min-max] seconds per instance over $rounds rounds, $n instances:"
for e in "${executors[@]}"; do
  for jobs in 1 0; do
    printf '%s\n' ${results[$e-$jobs]} | sort -g | awk -v n="$n" -v e="$e" -v j="$jobs" '
      { v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "  %-6s --jobs %d: %.3f [%.3f-%.3f]\n", e, j, m / n, v[1] / n, v[NR] / n }'
  done
done
