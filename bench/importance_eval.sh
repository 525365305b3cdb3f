#!/usr/bin/env bash
# Importance scored by eval (paper Fig. 2(b)/(c)) on a real model, and the naive way for
# comparison: export each variant with prune/expand, then `slayer exec eval` it.
#   bench/importance_eval.sh MODEL_DIR EVALS_DIR [LIMIT] [NAIVE_VARIANTS] [OUT]
# MODEL_DIR: an HF directory (e.g. `slayer exec model.import` of the SmolLM2-135M GGUF);
# EVALS_DIR: the benchmark files (../shared/data/evals). Prints wall time and peak RSS of
# the importance run and of NAIVE_VARIANTS (default 3) naive variants, and leaves
# importance.{json,svg} under OUT (default /tmp/importance-eval).
set -euo pipefail
model=$1 evals=$2 limit=${3:-100} naive=${4:-3} out=${5:-/tmp/importance-eval}
slayer=${SLAYER:-target/debug/slayer}
mkdir -p "$out"
# REUSE=1 keeps an earlier importance run under OUT and times only the naive variants.
if [[ "${REUSE:-0}" != 1 || ! -f "$out/imp/importance.json" ]]; then
rm -rf "$out/imp"
/usr/bin/time -f "importance (score: eval, all variants): %e s, peak RSS %M KB" \
  "$slayer" exec importance --in model="$model" --set score=eval \
  --set "eval={tasks: [arc_easy], limit: $limit, data_dir: $evals}" \
  --set 'metrics=[angular, remove, insert]' --out "$out/imp"
fi
blocks=$(python3 -c "import json;print(json.load(open('$model/config.json'))['num_hidden_layers'])")
echo "blocks: $blocks; evaluations: $((1 + 3 * blocks - 1))"
for i in $(seq 0 $((naive - 1))); do
  rm -rf "$out/v" "$out/e"
  /usr/bin/time -f "naive variant remove $i: prune %e s, peak RSS %M KB" \
    "$slayer" exec prune --in model="$model" --set "remove=[$i]" --set merge=none --out "$out/v"
  /usr/bin/time -f "naive variant remove $i: eval %e s, peak RSS %M KB" \
    "$slayer" exec eval --in model="$out/v" --set 'tasks=[arc_easy]' --set limit="$limit" \
    --set data_dir="$evals" --out "$out/e"
  python3 - "$out" "$i" <<'PY'
import json, sys
out, i = sys.argv[1], int(sys.argv[2])
imp = json.load(open(f"{out}/imp/importance.json"))["eval"]["metrics"]["remove"][i]
direct = json.load(open(f"{out}/e/metrics.json"))
print(f"remove {i}: importance {imp['arc_easy']['acc']} / eval {direct['arc_easy']['acc']}",
      "equal" if imp == direct else "DIFFERENT")
PY
done
