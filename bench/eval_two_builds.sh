#!/usr/bin/env bash
# ARC-Easy (first ITEMS items, 0-shot, batch 16, 2 threads) scored by two slayer binaries,
# alternating ROUNDS times, on the same HF model directory: each run's wall time (the
# whole `slayer exec eval` process) and its accuracy (issue 21, acceptance 1: no eval
# regression).
#   bench/eval_two_builds.sh BEFORE_BIN AFTER_BIN MODEL_DIR DATA_DIR [ITEMS] [ROUNDS]
# MODEL_DIR: e.g. the --out DIR of `slayer exec model.import --set
# path='"SmolLM2-135M-Instruct.Q4_1.gguf"' --out DIR`.
set -euo pipefail
before=$1 after=$2 model=$3 data=$(cd "$4" && pwd) items=${5:-100} rounds=${6:-2}
out=$(mktemp -d)
for round in $(seq "$rounds"); do
  for side in before after; do
    bin=${!side}
    rm -rf "$out/$side"
    start=$(date +%s.%N)
    metrics=$(RAYON_NUM_THREADS=2 "$bin" exec eval --in "model=$model" --out "$out/$side" \
      --set 'tasks=["arc_easy"]' --set num_fewshot=0 --set batch_size=16 \
      --set "limit=$items" --set "data_dir=\"$data\"")
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    acc=$(echo "$metrics" | python3 -c 'import json,sys; m=json.load(sys.stdin)["arc_easy"]; print(m["acc"], m["acc_norm"])')
    printf 'round %s %-6s %6.1f s  acc/acc_norm %s\n' "$round" "$side" "$wall" "$acc"
  done
done
rm -rf "$out"
