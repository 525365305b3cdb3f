#!/usr/bin/env bash
# Data-parallel training on the CPU (issue 23, acceptance 3): 2 ranks x 1 thread vs
# 1 process x 2 threads, SmolLM2-135M shape, the 8 expanded blocks of (2+1)x8|6
# trainable, same global batch, seq len and steps. Prints one RESULT line per run
# (tokens/s over the steps after two warm-up steps, step time, all-reduce time per step,
# peak RSS of rank 0 or of the process). Needs OpenMPI (mpirun).
#
# Usage: bench/train_dp_cpu.sh [SEQ] [BATCH] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${1:-256}
BATCH=${2:-4}
STEPS=${3:-6}
ROUNDS=${4:-2}
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
export TRAIN_BENCH_SEQ=$SEQ TRAIN_BENCH_BATCH=$BATCH TRAIN_BENCH_STEPS=$STEPS
export TRAIN_BENCH_DIR=${TRAIN_BENCH_DIR:-$(mktemp -d)}
BIN=$(bench/train_bench_bin.sh)
for round in $(seq "$ROUNDS"); do
  # Alternate the order so that neither side always runs on a warmer machine.
  if [ $((round % 2)) = 1 ]; then order="2 1"; else order="1 2"; fi
  for ranks in $order; do
    (cd stages && TRAIN_BENCH_RANKS=$ranks "$BIN" train_throughput --ignored --nocapture 2>&1) \
      | grep -E "^(RESULT|step )"
  done
done
