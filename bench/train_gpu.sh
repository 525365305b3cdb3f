#!/usr/bin/env bash
# GPU training throughput and MFU (issue 6, acceptance 4): bf16 training on cuda of a
# ~0.5B-parameter Llama-shaped model (hidden 1536, 16 blocks, 12 heads of 128, 4 kv
# heads, intermediate 4096, vocab 32000: 0.50B parameters), everything trainable, through
# the real training loop (bf16 weights and activations, f32 master weights and AdamW
# moments). Prints a RESULT line with tokens/s and MFU = achieved model FLOP/s over the
# GPU's dense bf16 peak (default 989 TFLOP/s, H100 SXM; set TRAIN_BENCH_PEAK_TFLOPS).
# Model FLOPs per token: 6 x (parameters outside the embedding lookup) + 12 x layers x
# hidden x seq (attention scores), the PaLM-paper accounting.
#
# Usage: bench/train_gpu.sh [SEQ] [BATCH] [STEPS] [PRECISION]
set -euo pipefail
cd "$(dirname "$0")/.."
export TRAIN_BENCH_SEQ=${1:-2048}
export TRAIN_BENCH_BATCH=${2:-8}
export TRAIN_BENCH_STEPS=${3:-8}
export TRAIN_BENCH_PRECISION=${4:-bf16}
export TRAIN_BENCH_DEVICE=${TRAIN_BENCH_DEVICE:-cuda:0}
export TRAIN_BENCH_SHAPE=llama-0.5b
export TRAIN_BENCH_TRAINABLE=${TRAIN_BENCH_TRAINABLE:-all}
export TRAIN_BENCH_DIR=${TRAIN_BENCH_DIR:-$(mktemp -d)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
cargo test --features cuda -p slayer-stages --test train_bench --no-run
cargo test --features cuda -q -p slayer-stages --test train_bench -- \
  --ignored --nocapture 2>&1 | grep -E "^(RESULT|step )"
