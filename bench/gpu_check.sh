#!/usr/bin/env bash
# The prepared GPU check (issue 23, acceptance 4): one command, under 8 minutes on one
# H100/H200-class GPU from a warm build. It prints RESULT lines and keeps every log in
# OUT_DIR (default a temp dir):
#   1. parity: the tiny fixtures of every family on cuda:0 in f32 against transformers'
#      logits, full sequence and KV-cached (stages/tests/gpu_parity.rs, tolerance 1e-4);
#   2. throughput: bf16 training of the 0.5B Llama shape, everything trainable, seq 2048
#      x batch 8: tokens/s and MFU (stages/tests/train_bench.rs, bench/train_gpu.sh);
#   3. the 7B S strategy: a random Llama-2-7B-shaped bf16 checkpoint
#      (dev/make_big_checkpoint.py, numpy only), expanded by `slayer exec expand` to
#      `(2+1)x8|13|1◇`, trained for a few steps with its 9 new blocks trainable (frozen
#      blocks bf16, trainable ones with f32 masters) at seq 2048 keeping every
#      activation and at seq 4096 with per-block recomputation (`recompute: blocks`;
#      without it the plan needs 145.5 GB): peak GPU memory (nvidia-smi, sampled every
#      100 ms), tokens/s and the stage's own memory plan.
#
# Usage:
#   bench/gpu_check.sh build          build the binaries (offline, no GPU needed) into
#                                     bench/gpu-bin/ (git-ignored), stripped
#   bench/gpu_check.sh [OUT_DIR]      run the check (builds first when bench/gpu-bin/ is
#                                     missing); without a CUDA GPU it stops with one line
#
# CUDA versions: the binaries are built against the CUDA 13.0 driver API
# (CUDARC_CUDA_VERSION=13000, overridable: 12080 for a CUDA 12.8 driver, ...); the
# driver must support that version or newer; the kernels are compiled at run time by
# NVRTC (libnvrtc.so from the CUDA toolkit or from pip's nvidia-cuda-nvrtc).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${GPU_CHECK_BIN:-bench/gpu-bin}

build() {
  set -e
  export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
  mkdir -p "$BIN"
  cargo build --features cuda --bin slayer
  local json
  json=$(cargo test --features cuda -p slayer-stages --test gpu_parity --test train_bench \
    --no-run --message-format=json)
  for t in gpu_parity train_bench; do
    local exe
    exe=$(printf '%s\n' "$json" | grep "\"name\":\"$t\"" | grep -o '"executable":"[^"]*"' \
      | cut -d'"' -f4 | tail -1)
    [ -n "$exe" ] || { echo "gpu_check: no test binary $t was built" >&2; exit 1; }
    strip -o "$BIN/$t" "$exe"
  done
  strip -o "$BIN/slayer" "${CARGO_TARGET_DIR:-target}/debug/slayer"
  # The shared libraries beyond glibc (OpenBLAS, OpenMPI, ...) travel with the binaries,
  # so that a GPU machine without those packages runs them.
  mkdir -p "$BIN/lib"
  ldd "$BIN/slayer" "$BIN/train_bench" | awk '/=> \//{print $3}' | sort -u \
    | grep -v -E '/(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
    | xargs -r cp -L -t "$BIN/lib"
  ls -l "$BIN" "$BIN/lib"
  set +e
}

if [ "${1:-}" = build ]; then build; exit; fi

# A CUDA device, or one line and exit.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no CUDA GPU here (nvidia-smi finds none); nothing was run" >&2
  exit 2
fi
[ -x "$BIN/slayer" ] && [ -x "$BIN/gpu_parity" ] && [ -x "$BIN/train_bench" ] || build
OUT_DIR=${1:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
[ -d "$BIN/lib" ] && export LD_LIBRARY_PATH="$(cd "$BIN/lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
WORK=${GPU_CHECK_WORK:-$PWD/target/gpu-check}  # ~35 GB at the peak
mkdir -p "$WORK"
# NVRTC from the toolkit or from a pip wheel, wherever it is.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  $(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.dirname(nvidia.cuda_nvrtc.__file__) + "/lib")' 2>/dev/null); do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
START=$(date +%s)
stamp() { echo "== $1 ($(($(date +%s) - START)) s)"; }

# Peak GPU memory of a command: nvidia-smi sampled every 100 ms beside it.
with_peak() {
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
    >"$OUT_DIR/$name.mem" 2>/dev/null &
  local smi=$!
  "$@" >"$OUT_DIR/$name.log" 2>&1
  local rc=$?
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  local peak
  peak=$(sort -n "$OUT_DIR/$name.mem" | tail -1)
  grep -E '^(RESULT|step )' "$OUT_DIR/$name.log"
  echo "RESULT $name rc=$rc peak_gpu_mib=${peak:-?}"
  [ $rc = 0 ] || tail -5 "$OUT_DIR/$name.log"
}

# The 7B checkpoint is CPU work (numpy, ~1-2 min): written while the GPU runs 1 and 2.
if [ ! -f "$WORK/l7/config.json" ]; then
  (python3 dev/make_big_checkpoint.py llama2-7b "$WORK/l7" >"$OUT_DIR/make7b.log" 2>&1; echo "rc=$?" >>"$OUT_DIR/make7b.log") &
  MAKE7B=$!
fi

stamp "1. parity on cuda:0"
timeout 180 "$BIN/gpu_parity" --test-threads=1 --nocapture >"$OUT_DIR/parity.log" 2>&1
echo "RESULT parity rc=$?"
grep -E '^RESULT|panicked|test result' "$OUT_DIR/parity.log"

stamp "2. 0.5B bf16 training"
with_peak train_05b timeout 240 env TRAIN_BENCH_DEVICE=cuda:0 TRAIN_BENCH_SHAPE=llama-0.5b \
  TRAIN_BENCH_PRECISION=bf16 TRAIN_BENCH_TRAINABLE=all TRAIN_BENCH_SEQ=2048 \
  TRAIN_BENCH_BATCH=8 TRAIN_BENCH_STEPS=${GPU_CHECK_STEPS:-8} TRAIN_BENCH_DIR="$WORK/b05" \
  TRAIN_BENCH_PEAK_TFLOPS=${TRAIN_BENCH_PEAK_TFLOPS:-989} \
  "$BIN/train_bench" --ignored --nocapture train_throughput

stamp "3. 7B S strategy"
[ -n "${MAKE7B:-}" ] && wait "$MAKE7B"
tail -2 "$OUT_DIR/make7b.log" 2>/dev/null
stamp "expand"
timeout 300 "$BIN/slayer" exec expand --in model="$WORK/l7" --set 'layout=(2+1)x8|13|1◇' \
  --set init=average --out "$WORK/l7s" >"$OUT_DIR/expand.log" 2>&1
echo "RESULT expand rc=$?"
rm -rf "$WORK/l7"  # the expanded copy stands alone; the disk holds two 7B models at most
for run in "2048 none" "4096 blocks"; do
  read -r seq recompute <<<"$run"
  stamp "train seq $seq, recompute $recompute"
  with_peak "train_7b_s_${seq}_$recompute" timeout 300 env TRAIN_BENCH_DEVICE=cuda:0 TRAIN_BENCH_MODEL="$WORK/l7s" \
    TRAIN_BENCH_PRECISION=bf16 TRAIN_BENCH_TRAINABLE=expanded TRAIN_BENCH_SEQ=$seq \
    TRAIN_BENCH_RECOMPUTE=$recompute \
    TRAIN_BENCH_BATCH=1 TRAIN_BENCH_STEPS=4 TRAIN_BENCH_DIR="$WORK/b7" \
    TRAIN_BENCH_PEAK_TFLOPS=${TRAIN_BENCH_PEAK_TFLOPS:-989} \
    TRAIN_BENCH_SHAPE=s-strategy-7b "$BIN/train_bench" --ignored --nocapture train_throughput
  rm -rf "$WORK"/b7/out-*
done
stamp "done"
