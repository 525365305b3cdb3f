#!/usr/bin/env bash
# Inference on a checkpoint larger than an f32 copy would fit: perplexity of 256 tokens
# and the importance stage (angular distance + removal sweep, 256 tokens), with the
# weights held in their stored dtype (docs/benchmarks.md, "Models larger than memory").
#
#   bench/inference_large.sh MODEL_DIR [TEXT_FILE]
#
# MODEL_DIR: an HF Llama directory with a tokenizer.json, e.g. one written by
#   python3 dev/make_big_checkpoint.py llama2-7b /tmp/llama2-7b-shape
# Prints wall time and peak RSS of each, and peak RSS as a multiple of the checkpoint's
# bytes (the goal is <= 1.25x). Uses target/debug/slayer (or $SLAYER).
set -euo pipefail
model=$(realpath "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
text=${2:-$root/dev/data/ppl_text.txt}
slayer=${SLAYER:-$root/target/debug/slayer}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bytes=$(cat "$model"/*.safetensors | wc -c)

measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$name.log" 2>&1 \
    || { echo "$name failed:"; tail -5 "$work/$name.log"; exit 1; }
  read -r wall rss < "$work/time"
  python3 -c "import sys; w, r, b = float(sys.argv[1]), int(sys.argv[2]) * 1024, int(sys.argv[3]); \
print(f'{sys.argv[4]:<11} wall {w:7.1f} s   peak RSS {r / 1e6:7.0f} MB = {r / b:.2f}x the checkpoint')" \
    "$wall" "$rss" "$bytes" "$name"
}

echo "model: $model ($((bytes / 1000000)) MB of safetensors), $(nproc) cores"
measure perplexity "$slayer" perplexity --model "$model" --file "$text" --max-tokens 256 --json
cat "$work/perplexity.log" | tail -1
measure importance "$slayer" exec importance --in "model=$model" --in "text=$text" \
  --set max_tokens=256 --set 'metrics=[angular, remove]' --out "$work/imp"
