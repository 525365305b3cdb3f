#!/usr/bin/env bash
# Mutation-fuzzes slayer's readers of untrusted bytes (manifest, layout, GGUF,
# safetensors, tokenizer.json) for a time budget; see stages/tests/fuzz_inputs.rs.
#   dev/fuzz.sh [SECONDS_PER_TARGET] [TARGET]
# SLAYER_FUZZ_SEED fixes the seed (default: the clock; printed). A panicking input is
# saved under the target dir's tmp/fuzz-crashes/ and the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export SLAYER_FUZZ_SECONDS="${1:-60}"
if [[ -n "${2:-}" ]]; then export SLAYER_FUZZ_TARGET="$2"; fi
exec cargo test -p slayer-stages --test fuzz_inputs -- --ignored --nocapture fuzz_long
