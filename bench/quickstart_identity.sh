#!/usr/bin/env bash
# The quickstart run by two slayer binaries back to back, each in a fresh workspace:
# prints each stage's fingerprint and run time side by side and whether every
# fingerprint and every output hash is the same (issue 21, acceptance 1).
#   bench/quickstart_identity.sh BEFORE_BIN AFTER_BIN [OUT_DIR]
set -euo pipefail
before=$1 after=$2 out=${3:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
for side in before after; do
  bin=${!side}
  rm -rf "$out/$side" && mkdir -p "$out/$side"
  cp "$here/manifests/quickstart.yaml" "$out/$side/"
  start=$(date +%s)
  (cd "$out/$side" && "$bin" run quickstart.yaml -q > run.log 2>&1)
  echo "$side: $(( $(date +%s) - start )) s wall ($bin)"
done
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def records(side):
    recs = {}
    for p in (out / side / ".slayer" / "runs").glob("*.json"):
        r = json.loads(p.read_text())
        recs[r["stage"]] = r
    return recs
b, a = records("before"), records("after")
same = True
print(f"{'stage':32} {'fingerprint before':18} {'after':18} {'s before':>9} {'s after':>9}")
for stage in sorted(set(b) | set(a)):
    rb, ra = b.get(stage, {}), a.get(stage, {})
    fb, fa = rb.get("fingerprint", "-"), ra.get("fingerprint", "-")
    ob = {k: v.get("hash") if isinstance(v, dict) else v for k, v in rb.get("outputs", {}).items()}
    oa = {k: v.get("hash") if isinstance(v, dict) else v for k, v in ra.get("outputs", {}).items()}
    ok = fb == fa and ob == oa
    same &= ok
    print(f"{stage:32} {fb[:16]:18} {fa[:16]:18} {rb.get('duration_s', 0):9.1f} {ra.get('duration_s', 0):9.1f} {'' if ok else 'DIFFERS'}")
print("identical fingerprints and outputs" if same else "NOT identical")
sys.exit(0 if same else 1)
PY
