#!/usr/bin/env bash
# The vendored crates as patches over their pristine releases (issue 21): what slayer
# changed in each crate, as one reviewable diff per crate, vendor/patches/<crate>.patch.
#
#   vendor/patches.sh write   regenerate the patches from vendor/<crate>
#   vendor/patches.sh check   apply each patch to the pristine release and compare the
#                             result with vendor/<crate> byte for byte (exit 1 if not)
#
# Compared: the crate's sources (src/, build.rs) and Cargo.toml, plus its license files.
# Not compared: README.md (slayer's account of the changes; upstream's README is kept as
# README.upstream.md) and what the vendored copy leaves out (upstream's benches, docs,
# Cargo.lock). The pristine sources come from cargo's own cache: a throwaway package
# depending on the exact versions is fetched (`cargo fetch`), nothing else.
set -euo pipefail
cd "$(dirname "$0")"
CRATES="burn-flex=0.21.0 gemm=0.19.0"
mode=${1:-check}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/fetch/src"
echo 'fn main() {}' >"$tmp/fetch/src/main.rs"
{
  printf '[package]\nname = "fetch-pristine"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\n'
  for c in $CRATES; do echo "${c%%=*} = \"=${c#*=}\""; done
} >"$tmp/fetch/Cargo.toml"
(cd "$tmp/fetch" && cargo fetch -q)

# The files of a crate directory that the comparison covers, relative to it.
covered() {
  (cd "$1" && find . -type f \( -path './src/*' -o -name build.rs -o -name Cargo.toml \
    -o -name 'LICENSE*' \) ! -name Cargo.toml.orig | sed 's|^\./||' | sort)
}

status=0
mkdir -p patches
for c in $CRATES; do
  name=${c%%=*} version=${c#*=}
  pristine=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d \
    -name "$name-$version" | head -1)
  [ -n "$pristine" ] || { echo "patches: $name $version not in cargo's cache" >&2; exit 1; }
  # a/: the pristine files that are covered and that slayer kept or changed; b/: ours.
  rm -rf "$tmp/a" "$tmp/b"
  mkdir -p "$tmp/a" "$tmp/b"
  { covered "$pristine"; covered "$name"; } | sort -u | while read -r f; do
    if [ -f "$pristine/$f" ] && { [ -f "$name/$f" ] || [[ $f == src/* ]]; }; then
      install -D -m 644 "$pristine/$f" "$tmp/a/$f"
    fi
    if [ -f "$name/$f" ]; then install -D -m 644 "$name/$f" "$tmp/b/$f"; fi
  done
  case $mode in
    write)
      # Without the file times, so that an unchanged crate regenerates the same patch.
      (cd "$tmp" && diff -ruN a b | sed -E 's/^(---|\+\+\+) ([^\t]*)\t.*/\1 \2/' \
        >"$OLDPWD/patches/$name.patch") || true
      echo "patches/$name.patch: $(grep -c '^+++ ' "patches/$name.patch") files, $(wc -l <"patches/$name.patch") lines"
      ;;
    check)
      cp -r "$tmp/a" "$tmp/c"
      (cd "$tmp/c" && patch -s -p1 <"$OLDPWD/patches/$name.patch")
      if diff -r "$tmp/c" "$tmp/b" >/dev/null; then
        echo "$name $version + patches/$name.patch = vendor/$name"
      else
        echo "$name: vendor/$name differs from $name $version + patches/$name.patch:" >&2
        diff -rq "$tmp/c" "$tmp/b" >&2 || true
        status=1
      fi
      rm -rf "$tmp/c"
      ;;
    *) echo "usage: vendor/patches.sh write|check" >&2; exit 2 ;;
  esac
done
exit $status
