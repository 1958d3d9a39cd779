#!/usr/bin/env bash
# `kiln diff` of two 1 GiB single-layer images that differ in one byte of
# one file, against just reading both: `tar -tzf` of the two layer blobs
# (which decompresses them as the diff must) one after the other and both
# at once (kiln reads the two images in two threads), and `cat` of the
# blobs; in alternating rounds, with peak RSS from /usr/bin/time -v.
#   SIZE_MIB=1024 ROUNDS=3 tests/bench-diff.sh
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-1024}
rounds=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-diff.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
kiln=$PWD/target/release/kiln
export KILN_STORE=$work/store SOURCE_DATE_EPOCH=0

# The tree: 1 MiB files of base64 text from /dev/urandom (gzip gets them to
# ~76%, like typical binaries and text), 64 files per directory.
echo "generating a ${size_mib} MiB tree and two images of it" >&2
tree=$work/tree
mkdir -p "$tree"
for ((d = 0; d * 64 < size_mib; d++)); do
  n=$(( size_mib - d * 64 < 64 ? size_mib - d * 64 : 64 ))
  mkdir -p "$tree/d$d"
  head -c $(( n * 786432 )) /dev/urandom | base64 -w 100 \
    | split -b 1M -a 3 - "$tree/d$d/f"
done
"$kiln" image import "$tree" --tag a >/dev/null
# B: one byte changed in the middle of one file in the middle of the tree.
victim=$tree/d$(( size_mib / 128 ))/faaf
printf 'Z' | dd of="$victim" bs=1 seek=500000 conv=notrunc status=none
"$kiln" image import "$tree" --tag b >/dev/null
blob() { # the layer blob of image $1
  local m layer
  m=$("$kiln" image ls | awk -v n="$1:latest" '$1 == n { print $2 }')
  layer=$(jq -r '.layers[0].digest' "$KILN_STORE/blobs/sha256/${m#sha256:}")
  echo "$KILN_STORE/blobs/sha256/${layer#sha256:}"
}
blob_a=$(blob a)
blob_b=$(blob b)
[ -f "$blob_a" ] && [ -f "$blob_b" ] || { echo "bench-diff: layer blobs not found" >&2; exit 1; }
bytes=$(( $(stat -c %s "$blob_a") + $(stat -c %s "$blob_b") ))
sync

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time" "$@" >/dev/null || true
  t1=$(date +%s.%N)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time")
  awk -v l="$label" -v s="$t0" -v e="$t1" -v r="$rss" \
    'BEGIN { printf "%-26s %7.2f s  peak RSS %7.1f MiB\n", l, e - s, r / 1024 }'
}

echo "two images of $size_mib MiB ($(( bytes / 1048576 )) MiB of gzip layers); $rounds rounds, alternating; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$kiln" diff a b > "$work/report" || [ $? = 1 ]
grep -E 'changed|first difference' "$work/report" | head -3
for ((r = 1; r <= rounds; r++)); do
  measure "cat both blobs" sh -c "cat '$blob_a' '$blob_b' > /dev/null"
  measure "tar -tzf A; tar -tzf B" sh -c "tar -tzf '$blob_a' > /dev/null && tar -tzf '$blob_b' > /dev/null"
  measure "tar -tzf A & tar -tzf B" sh -c "tar -tzf '$blob_a' > /dev/null & tar -tzf '$blob_b' > /dev/null; wait"
  measure "kiln diff a b" sh -c "'$kiln' diff a b > /dev/null; [ \$? = 1 ]"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
