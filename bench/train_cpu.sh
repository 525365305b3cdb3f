#!/usr/bin/env bash
# Training throughput on the CPU (issue 6, acceptance 3): slayer (burn Flex) vs PyTorch,
# SmolLM2-135M shape, 8 expanded blocks trainable vs all trainable, same seq len, batch
# and threads. Prints one RESULT line per run (tokens/s, step time, peak RSS).
#
# Usage: bench/train_cpu.sh [SEQ] [BATCH] [STEPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
SEQ=${1:-256}
BATCH=${2:-4}
STEPS=${3:-6}
THREADS=${4:-$(nproc)}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
export TRAIN_BENCH_SEQ=$SEQ TRAIN_BENCH_BATCH=$BATCH TRAIN_BENCH_STEPS=$STEPS
export TRAIN_BENCH_DIR=${TRAIN_BENCH_DIR:-$(mktemp -d)}
BIN=$(bench/train_bench_bin.sh)
for which in expanded all; do
  (cd stages && TRAIN_BENCH_TRAINABLE=$which "$BIN" --ignored --nocapture 2>&1) \
    | grep -E "^(RESULT|step )"
  python3 bench/train_torch.py "$which" "$SEQ" "$BATCH" "$STEPS" "$THREADS" 2>&1 \
    | grep -E "^(RESULT|step )"
done
