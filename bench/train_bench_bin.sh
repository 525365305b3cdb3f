#!/usr/bin/env bash
# Builds the train_bench test binary (stages/tests/train_bench.rs) and prints its path, for
# the bench scripts that run it directly (so that a concurrent cargo build cannot hold a
# timed run up). Run from the repository root.
set -euo pipefail
cargo test -p slayer-stages --test train_bench --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])'
