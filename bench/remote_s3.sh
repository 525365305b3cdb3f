#!/usr/bin/env bash
# Push and pull throughput of the S3 remote cache against a local moto server
# (docs/benchmarks.md, "Remote cache (S3)").
#
#   bench/remote_s3.sh [SIZE_MB] [ROUNDS]      (default: 1024 MB, 3 rounds)
#
# One `command` stage writes SIZE_MB of random bytes; `slayer run` caches it in a fresh
# workspace. Each round wipes the bucket, times `slayer push` (everything uploads) and
# `slayer pull` into a fresh workspace (everything downloads, blake3-checked), and prints
# each time; the medians come last. Needs target/debug/slayer (cargo build; or
# $SLAYER) and moto_server (see tests/infra/s3-up.sh).
#
# moto is an in-memory Python server (one process, werkzeug): it, not slayer, bounds
# these numbers. They show the client streams and overlaps transfers; against real S3
# the network decides.
set -euo pipefail
size_mb=${1:-1024}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
slayer=${SLAYER:-${CARGO_TARGET_DIR:-$root/target}/debug/slayer}
[ -x "$slayer" ] || { echo "no slayer binary at $slayer (cargo build, or set SLAYER)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/slayer-s3-bench.XXXXXX")
vars=$(MOTO_OWNER_PID=$$ bash "$root/tests/infra/s3-up.sh" --bucket slayer-bench)
run_dir=$(sed -n 's/^MOTO_RUN_DIR=//p' <<<"$vars")
cleanup() { bash "$root/tests/infra/s3-up.sh" down "$run_dir" >/dev/null; rm -rf "$work" "$run_dir"; }
trap cleanup EXIT
while IFS='=' read -r k v; do
  case $k in AWS_*) export "$k=$v" ;; esac
done <<<"$vars"
endpoint=$AWS_ENDPOINT_URL

manifest() { # DIR
  mkdir -p "$1/.slayer"
  cat >"$1/bench.yaml" <<YAML
name: s3bench
stages:
  blob:
    kind: command
    with:
      run: "head -c ${size_mb}M /dev/urandom > \$SLAYER_OUT/blob.bin"
      outputs: {blob: blob.bin}
YAML
}
manifest "$work/src"
"$slayer" run "$work/src/bench.yaml" -q

now() { date +%s.%N; }
# Peak RSS of each command, where GNU time is installed.
timed() { # OUT_FILE CMD...
  local out=$1; shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -f '%M' -o "$out" "$@"; else "$@"; echo 0 >"$out"; fi
}
push_s=(); pull_s=(); push_kb=0; pull_kb=0
for r in $(seq "$rounds"); do
  curl -fs -o /dev/null -X POST "$endpoint/moto-api/reset"
  curl -fs -o /dev/null -X PUT "$endpoint/slayer-bench"
  t0=$(now); timed "$work/rss" "$slayer" push "$work/src/bench.yaml" --remote s3://slayer-bench/bench >/dev/null; t1=$(now)
  push_kb=$(( $(cat "$work/rss") > push_kb ? $(cat "$work/rss") : push_kb ))
  rm -rf "$work/dst"; manifest "$work/dst"
  t2=$(now); timed "$work/rss" "$slayer" pull "$work/dst/bench.yaml" --remote s3://slayer-bench/bench >/dev/null; t3=$(now)
  pull_kb=$(( $(cat "$work/rss") > pull_kb ? $(cat "$work/rss") : pull_kb ))
  cmp -s "$work/src/.slayer/out"/*/blob.bin "$work/dst/.slayer/out"/*/blob.bin \
    || { echo "round $r: pulled bytes differ" >&2; exit 1; }
  push_s+=("$(awk "BEGIN{print $t1 - $t0}")"); pull_s+=("$(awk "BEGIN{print $t3 - $t2}")")
  printf 'round %d: push %.2f s (%.0f MB/s), pull %.2f s (%.0f MB/s)\n' "$r" \
    "${push_s[-1]}" "$(awk "BEGIN{print $size_mb / ${push_s[-1]}}")" \
    "${pull_s[-1]}" "$(awk "BEGIN{print $size_mb / ${pull_s[-1]}}")"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mp=$(median "${push_s[@]}"); ml=$(median "${pull_s[@]}")
printf 'median of %d, %d MB: push %.2f s (%.0f MB/s), pull %.2f s (%.0f MB/s)\n' "$rounds" "$size_mb" \
  "$mp" "$(awk "BEGIN{print $size_mb / $mp}")" "$ml" "$(awk "BEGIN{print $size_mb / $ml}")"
echo "peak RSS: push $((push_kb / 1024)) MiB, pull $((pull_kb / 1024)) MiB"
