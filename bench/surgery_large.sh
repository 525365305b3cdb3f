#!/usr/bin/env bash
# Streamed surgery on a large checkpoint, side by side with `cp -r` and mergekit, in one
# run (docs/benchmarks.md, "Models larger than memory").
#
#   bench/surgery_large.sh MODEL_DIR LAYOUT [ROUNDS]
#
# MODEL_DIR: an HF Llama directory, e.g. one written by
#   python3 dev/make_big_checkpoint.py llama2-7b /tmp/llama2-7b-shape
# LAYOUT: the slayer layout, e.g. '(2+1)x8|13|1◇' (32 blocks) or '(2+1)x5|9|1◇' (22).
# Needs target/debug/slayer (cargo build; or $SLAYER) and mergekit in $MERGEKIT_VENV
# (default /work/venv: python3 -m venv /work/venv && /work/venv/bin/pip install mergekit).
#
# mergekit cannot average two blocks inside a passthrough merge, nor merge the deleted
# blocks into the final one: its config here is the closest it expresses — the same
# block list with *copied* new blocks whose o_proj/down_proj are scaled to zero, and the
# final kept block copied. Its work (read every tensor, write 8 extra blocks, drop 2) is
# the same; slayer additionally averages 8 blocks and merges 2 into the final one.
#
# Each tool writes to a fresh directory next to the model (same filesystem); outputs
# are deleted after each measurement. Rounds alternate the tools' order.
set -euo pipefail
model=$(realpath "$1")
layout=$2
rounds=${3:-2}
venv=${MERGEKIT_VENV:-/work/venv}
root=$(cd "$(dirname "$0")/.." && pwd)
# The dev build is enough: slayer-stages and every dependency are optimised in it.
slayer=${SLAYER:-$root/target/debug/slayer}
work=$(dirname "$model")/surgery-bench.$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

blocks=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" "$model/config.json")
# The mergekit slices of the layout (groups of P+1, K kept, a final block, the rest deleted).
python3 - "$layout" "$blocks" "$model" > "$work/mergekit.yml" <<'EOF'
import re, sys
layout, blocks, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
zero = "{scale: [{filter: o_proj, value: 0.0}, {filter: down_proj, value: 0.0}, {value: 1.0}]}"
print("merge_method: passthrough\ndtype: bfloat16\nslices:")
nxt = 0
def keep(a, b):
    print(f"  - sources: [{{model: {model}, layer_range: [{a}, {b}]}}]")
for seg in layout.replace("◇", "").replace("<>", "").split("|"):
    for part in seg.split():
        m = re.fullmatch(r"\((\d+)\+1\)x(\d+)", part)
        if m:
            p, n = int(m[1]), int(m[2])
            for _ in range(n):
                keep(nxt, nxt + p)
                nxt += p
                print(f"  - sources: [{{model: {model}, layer_range: [{nxt - 1}, {nxt}], parameters: {zero}}}]")
        else:
            k = int(part)
            keep(nxt, nxt + k)
            nxt += k
EOF

measure() { # name, command...: prints "name wall_s max_rss_mb"
  local name=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$name.log" 2>&1 \
    || { echo "$name failed:"; tail -5 "$work/$name.log"; exit 1; }
  read -r wall rss < "$work/time"
  printf '%-9s wall %7.1f s   peak RSS %7.0f MB\n' "$name" "$wall" "$((rss / 1024))"
}

size=$(du -sb "$model" | cut -f1)
echo "model: $model ($((size / 1000000)) MB, $blocks blocks), layout $layout, $(nproc) cores"
for r in $(seq "$rounds"); do
  echo "round $r"
  order=(cp slayer mergekit)
  [ $((r % 2)) = 0 ] && order=(mergekit slayer cp)
  for tool in "${order[@]}"; do
    out=$work/out-$tool
    case $tool in
      cp) measure cp cp -r "$model" "$out" ;;
      slayer) measure slayer "$slayer" exec expand --in "model=$model" \
                --set "layout=$layout" --out "$out" ;;
      mergekit) measure mergekit "$venv/bin/mergekit-yaml" "$work/mergekit.yml" "$out" \
                  --lazy-unpickle --quiet ;;
    esac
    rm -rf "$out"
  done
done
