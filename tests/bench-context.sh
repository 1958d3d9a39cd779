#!/usr/bin/env bash
# Context hashing throughput: `kiln plan` over a context of N files (walk,
# .dockerignore, parallel blake3, planning) against `b3sum` hashing the same
# files, alternating, several rounds. Issue #3's goal: kiln >= 0.8x b3sum.
#
#   tests/bench-context.sh [FILES] [SIZE_KIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000}
size_kib=${2:-256}
rounds=${3:-5}

command -v b3sum >/dev/null || { echo "bench-context: install b3sum (apt-get install b3sum)" >&2; exit 1; }
cargo build --release --locked -q
kiln=$PWD/target/release/kiln

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctx=$work/ctx
mkdir -p "$ctx/src"
printf 'FROM scratch\nCOPY . /app/\n' > "$ctx/Dockerfile"
head -c $((files * size_kib * 1024)) /dev/urandom | split -b $((size_kib * 1024)) -a 6 - "$ctx/src/f"
total_mib=$((files * size_kib / 1024))
echo "context: $files files x $size_kib KiB = $total_mib MiB, $(nproc) cores"

# Warm the page cache so both read from memory.
cat "$ctx"/src/* > /dev/null


best() { sort -n | head -1; }
kiln_times=(); b3_times=()
for i in $(seq "$rounds"); do
  # A fresh store each round: no stat cache, every byte is hashed.
  s=$(date +%s.%N); KILN_STORE=$work/store-$i "$kiln" plan "$ctx" >/dev/null; e=$(date +%s.%N)
  kiln_times+=("$(echo "$e - $s" | bc)")
  s=$(date +%s.%N); (cd "$ctx" && find . -type f -print0 | xargs -0 b3sum >/dev/null); e=$(date +%s.%N)
  b3_times+=("$(echo "$e - $s" | bc)")
done
k=$(printf '%s\n' "${kiln_times[@]}" | best)
b=$(printf '%s\n' "${b3_times[@]}" | best)
echo "kiln plan: best ${k}s  ($(echo "scale=1; $total_mib / $k" | bc) MiB/s)  runs: ${kiln_times[*]}"
echo "b3sum:     best ${b}s  ($(echo "scale=1; $total_mib / $b" | bc) MiB/s)  runs: ${b3_times[*]}"
echo "kiln/b3sum throughput ratio: $(echo "scale=2; $b / $k" | bc)x (goal >= 0.8x)"

# Stat cache: a 100,000-file context (STAT_KIB KiB each, like a source
# tree) planned cold (fresh store: every file read and hashed, from the page
# cache) and warm (same store: stat fields match, nothing read).
# Issue #3's goal: warm at least 10x faster than cold.
many=${STAT_FILES:-100000}
stat_kib=${STAT_KIB:-16}
big=$work/many
mkdir -p "$big"
printf 'FROM scratch\nCOPY . /app/\n' > "$big/Dockerfile"
(cd "$big" && for d in $(seq 0 99); do mkdir -p "d$d"; done
 seq 0 $((many - 1)) | awk -v dir="$big" -v kib="$stat_kib" 'BEGIN { pad = ""; line = sprintf("%63s\n", "x"); for (i = 0; i < kib * 16; i++) pad = pad line }
   { d = $1 % 100; f = dir "/d" d "/f" $1; printf "file %d\n%s", $1, pad > f; close(f) }')
cold_times=(); warm_times=()
for i in $(seq "$rounds"); do
  store=$work/stat-store-$i
  s=$(date +%s.%N); KILN_STORE=$store "$kiln" plan "$big" >/dev/null; e=$(date +%s.%N)
  cold_times+=("$(echo "$e - $s" | bc)")
  s=$(date +%s.%N); KILN_STORE=$store "$kiln" plan "$big" >/dev/null; e=$(date +%s.%N)
  warm_times+=("$(echo "$e - $s" | bc)")
  rm -rf "$store"
done
c=$(printf '%s\n' "${cold_times[@]}" | best)
w=$(printf '%s\n' "${warm_times[@]}" | best)
echo "stat cache, $many files of $stat_kib KiB: cold best ${c}s, warm best ${w}s, speed-up $(echo "scale=1; $c / $w" | bc)x (goal >= 10x)"
echo "  cold runs: ${cold_times[*]}"
echo "  warm runs: ${warm_times[*]}"
