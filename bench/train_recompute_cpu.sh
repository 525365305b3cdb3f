#!/usr/bin/env bash
# Per-block activation recomputation on the CPU (issue 23, acceptance 3): `recompute:
# blocks` vs `none`, SmolLM2-135M shape, the 8 expanded blocks of (2+1)x8|6 trainable,
# f32, seq 1024. Each run is its own process, so its peak RSS (VmHWM) is its own; a
# one-step run first writes the random model to TRAIN_BENCH_DIR, so that no
# timed run pays for (or holds the memory of) creating it. Prints the RESULT line and
# the per-step lines of each run; rounds alternate the order.
#
# Usage: bench/train_recompute_cpu.sh [SEQ] [BATCH] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${1:-1024}
BATCH=${2:-2}
STEPS=${3:-5}
ROUNDS=${4:-2}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export TRAIN_BENCH_SEQ=$SEQ TRAIN_BENCH_BATCH=$BATCH
export TRAIN_BENCH_DIR=${TRAIN_BENCH_DIR:-$(mktemp -d)}
BIN=$(bench/train_bench_bin.sh)
run() {
  (cd stages && TRAIN_BENCH_RECOMPUTE=$1 TRAIN_BENCH_STEPS=$2 "$BIN" train_throughput --ignored --nocapture 2>&1)
}
run none 1 > /dev/null
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="blocks none"; else order="none blocks"; fi
  for recompute in $order; do
    run "$recompute" "$STEPS" | grep -E "^(RESULT|step )"
  done
done
