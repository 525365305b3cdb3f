#!/usr/bin/env bash
# Build times of two revisions side by side (issue 21, acceptance 4): for each, a
# `git worktree` checkout and a fresh target dir, then the cold `cargo test --workspace
# --no-run`, and incremental rebuilds after touching, then after appending a comment line
# to, stages/src/report/table.rs and the model's llama.rs (wherever the revision keeps it).
# Prints one line per build with its wall time. Run it on an otherwise idle machine.
#
# Usage: bench/build_times.sh REV_BEFORE REV_AFTER [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/build_times.sh REV_BEFORE REV_AFTER [WORK_DIR]" >&2; exit 2; }
work=${3:-$(mktemp -d)}
timed() {
  local what=$1 start
  shift
  start=$(date +%s.%N)
  "$@" >>"$log" 2>&1
  echo "$rev $what: $(echo "$(date +%s.%N) - $start" | bc) s"
}
for rev in "$1" "$2"; do
  wt="$work/wt-$rev" log="$work/build-$rev.log"
  git worktree add -q --detach "$wt" "$rev"
  export CARGO_TARGET_DIR="$work/target-$rev"
  llama=$( [ -f "$wt/model/src/llama.rs" ] && echo model/src/llama.rs || echo stages/src/model/llama.rs)
  build() { (cd "$wt" && cargo test --workspace --no-run); }
  timed "cold cargo test --workspace --no-run" build
  for f in stages/src/report/table.rs "$llama"; do
    touch "$wt/$f"
    timed "after touching $f" build
    echo "// edit" >>"$wt/$f"
    timed "after a comment line in $f" build
    git -C "$wt" checkout -q -- "$f"
  done
  git worktree remove --force "$wt"
done
