#!/usr/bin/env bash
# Layer packing throughput: kiln's deterministic layer writer (gzip, level 6,
# pure-Rust deflate) against `tar --sort=name -c | gzip -6` on the same 1 GiB
# tree, alternating, with peak RSS from /usr/bin/time -v. Prints figures.
#   SIZE_MIB=1024 ROUNDS=2 COMPRESSIONS="gzip" tests/bench-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-1024}
rounds=${ROUNDS:-2}
compressions=${COMPRESSIONS:-gzip}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The kiln side runs through the `pack_helper` hook of the image test binary
# (no CLI wiring yet), built in release mode.
bin=$(cargo test --release --test image --no-run --message-format=json 2>/dev/null \
  | grep '"kind":\["test"\]' | grep '"name":"image"' \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "bench-image: could not build the image test binary" >&2; exit 1; }

# The tree: 1 MiB files of base64 text from /dev/urandom (gzip gets them to
# ~76%, like typical binaries and text), 64 files per directory.
echo "generating a ${size_mib} MiB tree in $work/tree" >&2
tree=$work/tree
mkdir -p "$tree"
for ((d = 0; d * 64 < size_mib; d++)); do
  n=$(( size_mib - d * 64 < 64 ? size_mib - d * 64 : 64 ))
  mkdir -p "$tree/d$d"
  head -c $(( n * 786432 )) /dev/urandom | base64 -w 100 \
    | split -b 1M -a 3 - "$tree/d$d/f"
done
bytes=$(du -sb "$tree" | cut -f1)
sync

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time" "$@" >/dev/null
  t1=$(date +%s.%N)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time")
  awk -v l="$label" -v s="$t0" -v e="$t1" -v b="$bytes" -v r="$rss" -v o="$(stat -c %s "$work/out")" \
    'BEGIN { printf "%-22s %7.2f s %8.1f MiB/s  peak RSS %7.1f MiB  output %8.1f MiB\n", l, e - s, b / 1048576 / (e - s), r / 1024, o / 1048576 }'
}

echo "tree: $(( bytes / 1048576 )) MiB in $(find "$tree" -type f | wc -l) files; $rounds rounds, alternating"
for ((r = 1; r <= rounds; r++)); do
  for c in $compressions; do
    measure "kiln ($c)" env KILN_PACK_DIR="$tree" KILN_PACK_UMASK=022 KILN_PACK_OUT="$work/digests" \
      KILN_PACK_COMPRESSION="$c" KILN_PACK_BLOB="$work/out" "$bin" --exact pack_helper --quiet --test-threads=1
  done
  measure "tar | gzip -6" sh -c "tar -C '$tree' --sort=name --numeric-owner -cf - . | gzip -6 > '$work/out'"
done
