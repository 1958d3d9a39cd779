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
  s=$(date +%s.%N); KILN_STORE=$work/store-$i "$kiln" plan "$ctx" >/dev/null 2>&1; e=$(date +%s.%N)
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
# cache, warmed just before) and warm (same store: stat fields match,
# nothing read). Issue #3's goal: re-hashing the unchanged context at least
# 10x faster than the first pass. Reported twice: the context phase alone
# (walk, stat cache, hashing: the `context:` line kiln prints) and the
# whole `kiln plan` command (which also plans 100,000 COPY inputs and
# prints them).
many=${STAT_FILES:-100000}
stat_kib=${STAT_KIB:-16}
big=$work/many
mkdir -p "$big"
printf 'FROM scratch\nCOPY . /app/\n' > "$big/Dockerfile"
(cd "$big" && for d in $(seq 0 99); do mkdir -p "d$d"; done
 seq 0 $((many - 1)) | awk -v dir="$big" -v kib="$stat_kib" 'BEGIN { pad = ""; line = sprintf("%63s\n", "x"); for (i = 0; i < kib * 16; i++) pad = pad line }
   { d = $1 % 100; f = dir "/d" d "/f" $1; printf "file %d\n%s", $1, pad > f; close(f) }')
# kiln trusts the stat fields only of files changed over a second before
# the walk (coarse file timestamps); a fresh checkout waits that long.
sleep 2
phase() { sed -n 's/^context: .* in \([0-9.]*\)s$/\1/p' "$1"; }
cold_times=(); warm_times=(); cold_phase=(); warm_phase=()
for i in $(seq "$rounds"); do
  store=$work/stat-store-$i
  find "$big" -type f -exec cat {} + > /dev/null
  s=$(date +%s.%N); KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>"$work/cold.err"; e=$(date +%s.%N)
  cold_times+=("$(echo "$e - $s" | bc)"); cold_phase+=("$(phase "$work/cold.err")")
  s=$(date +%s.%N); KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>"$work/warm.err"; e=$(date +%s.%N)
  warm_times+=("$(echo "$e - $s" | bc)"); warm_phase+=("$(phase "$work/warm.err")")
  grep -q " 0 read " "$work/warm.err" || { echo "bench-context: the warm run read files: $(cat "$work/warm.err")" >&2; exit 1; }
  rm -rf "$store"
done
c=$(printf '%s\n' "${cold_times[@]}" | best)
w=$(printf '%s\n' "${warm_times[@]}" | best)
cp=$(printf '%s\n' "${cold_phase[@]}" | best)
wp=$(printf '%s\n' "${warm_phase[@]}" | best)
echo "stat cache, $many files of $stat_kib KiB, context phase: cold best ${cp}s, warm best ${wp}s, speed-up $(echo "scale=1; $cp / $wp" | bc)x (goal >= 10x)"
echo "  cold: ${cold_phase[*]}"
echo "  warm: ${warm_phase[*]}"
echo "stat cache, whole kiln plan: cold best ${c}s, warm best ${w}s, speed-up $(echo "scale=1; $c / $w" | bc)x"
echo "  cold: ${cold_times[*]}"
echo "  warm: ${warm_times[*]}"

# The same first pass with the file contents not in memory (as after a
# reboot, or when the page cache has let them go): root only.
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
  store=$work/stat-store-disk
  sync; echo 3 > /proc/sys/vm/drop_caches
  s=$(date +%s.%N); KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>"$work/cold.err"; e=$(date +%s.%N)
  dc=$(echo "$e - $s" | bc); dcp=$(phase "$work/cold.err")
  KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>"$work/warm.err"
  dwp=$(phase "$work/warm.err")
  echo "first pass from disk (caches dropped): context phase ${dcp}s (whole plan ${dc}s); warm after it ${dwp}s: speed-up $(echo "scale=1; $dcp / $dwp" | bc)x"
fi

# The floor of any stat cache: it must lstat every file to see that none
# changed. git does the same for `git status` (its index is a stat cache);
# alternate kiln's warm pass with `git status` over the same tree (the
# repository kept outside the context, untracked cache off so git lists
# every directory as kiln does) and with the bare floor: listing every
# directory and `fstatat`ing each name, nothing else, on every core
# (`cargo bench --bench lstat`).
if command -v git >/dev/null; then
  store=$work/stat-store-git
  export GIT_DIR=$work/git GIT_WORK_TREE=$big
  git init -q && git add -A && git status --porcelain >/dev/null
  KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>&1
  sleep 1
  cargo bench --locked -q --bench lstat --no-run 2>/dev/null
  kw=(); gw=(); fw=()
  for i in $(seq "$rounds"); do
    fw+=("$(cargo bench --locked -q --bench lstat -- "$big" 1 2>/dev/null | sed -n 's/.*best \([0-9.]*\)s$/\1/p')")
    KILN_STORE=$store "$kiln" plan "$big" >/dev/null 2>"$work/warm.err"; kw+=("$(phase "$work/warm.err")")
    s=$(date +%s.%N); git -c core.untrackedCache=false status --porcelain >/dev/null; e=$(date +%s.%N)
    gw+=("$(echo "$e - $s" | bc)")
  done
  unset GIT_DIR GIT_WORK_TREE
  echo "warm pass against git status on the same tree: kiln context phase best $(printf '%s\n' "${kw[@]}" | best)s, git status best $(printf '%s\n' "${gw[@]}" | best)s"
  echo "  kiln: ${kw[*]}"
  echo "  git:  ${gw[*]}"
  echo "bare lstat floor (every name, every core): best $(printf '%s\n' "${fw[@]}" | best)s: no stat cache's warm pass can be faster"
  echo "  floor: ${fw[*]}"
fi
