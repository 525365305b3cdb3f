#!/usr/bin/env bash
# `slayer exec train` (CPT, 8 trainable blocks, batch 4, STEPS steps, 2 threads) by two
# slayer binaries, alternating ROUNDS times, on the same model and packed data: each run's
# tokens/s, final loss and peak RSS as its metrics report them (issue 21, acceptance 1:
# no training regression; the same losses mean the same computation).
#   bench/train_two_builds.sh BEFORE_BIN AFTER_BIN MODEL_DIR PACKED_DATA [STEPS] [ROUNDS]
set -euo pipefail
before=$1 after=$2 model=$3 data=$4 steps=${5:-6} rounds=${6:-2}
out=$(mktemp -d)
for round in $(seq "$rounds"); do
  for side in before after; do
    bin=${!side}
    rm -rf "$out/$side"
    metrics=$(RAYON_NUM_THREADS=2 "$bin" exec train --in "model=$model" --in "data=$data" \
      --out "$out/$side" --set mode=cpt --set batch_size=4 --set "max_steps=$steps" \
      --set 'trainable={"blocks":[0,1,2,3,4,5,6,7]}')
    echo "$metrics" | SIDE="round $round $side" python3 -c '
import json, os, sys
m = json.load(sys.stdin)
print("%s: %7.1f tok/s  final loss %.6f  peak RSS %.0f MB"
      % (os.environ["SIDE"], m["tokens_per_s"], m["final_loss"], m["peak_rss_mb"]))'
  done
done
rm -rf "$out"
