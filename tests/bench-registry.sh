#!/usr/bin/env bash
# Registry throughput: `kiln push` / `kiln pull` against `skopeo copy` on
# the same image and a local Debian docker-registry (plain HTTP on
# 127.0.0.1, a free port, a temporary storage dir), alternating, with peak
# RSS from /usr/bin/time -v. The image is a generated tree of SIZE_MIB MiB
# imported with `kiln image import` (one gzip layer). Each push goes to a
# fresh registry (so every blob is sent) and each pull into a fresh store
# or layout (so every blob is fetched). Prints figures.
#   SIZE_MIB=300 ROUNDS=3 tests/bench-registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${SIZE_MIB:-300}
rounds=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-registry.XXXXXX")
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

for tool in docker-registry skopeo /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench-registry: $tool is missing" >&2; exit 1; }
done

cargo build --release --quiet
kiln=$PWD/target/release/kiln
export KILN_STORE=$work/store SOURCE_DATE_EPOCH=0

# The tree: 1 MiB files of base64 text from /dev/urandom (gzip gets them to
# ~76%), 64 files per directory.
echo "generating a ${size_mib} MiB tree" >&2
tree=$work/tree
mkdir -p "$tree"
for ((d = 0; d * 64 < size_mib; d++)); do
  n=$(( size_mib - d * 64 < 64 ? size_mib - d * 64 : 64 ))
  mkdir -p "$tree/d$d"
  head -c $(( n * 786432 )) /dev/urandom | base64 -w 100 \
    | split -b 1M -a 3 - "$tree/d$d/f"
done
"$kiln" image import "$tree" --tag big >/dev/null
rm -rf "$tree"
"$kiln" image export big "oci:$work/layout:big" >/dev/null
bytes=$(du -sb "$work/layout/blobs" | cut -f1)

# A fresh registry (new port, empty storage) for each round: skopeo keeps a
# blob-info cache of where blobs live and would mount them from an earlier
# round's repository instead of uploading them; kiln never mounts.
start_registry() { # round
  if [ -n "$registry_pid" ]; then kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry-$1
http:
  addr: 127.0.0.1:$port
EOF
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  host=127.0.0.1:$port
}

measure() { # label, command...
  local label=$1; shift
  local t0 t1 rss
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  t1=$(date +%s.%N)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time")
  awk -v l="$label" -v s="$t0" -v e="$t1" -v b="$bytes" -v r="$rss" \
    'BEGIN { printf "%-14s %7.2f s %8.1f MiB/s  peak RSS %7.1f MiB\n", l, e - s, b / 1048576 / (e - s), r / 1024 }'
}

echo "image: $(( bytes / 1048576 )) MiB of blobs (one gzip layer); $rounds rounds, alternating, a fresh registry each"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
  start_registry "$r"
  measure "kiln push" "$kiln" push big "$host/bench/kiln-$r:1"
  measure "skopeo push" skopeo copy --quiet --dest-tls-verify=false \
    "oci:$work/layout:big" "docker://$host/bench/skopeo-$r:1"
  measure "kiln pull" "$kiln" --store "$work/pull-kiln-$r" pull "$host/bench/kiln-$r:1"
  measure "skopeo pull" skopeo copy --quiet --src-tls-verify=false \
    "docker://$host/bench/skopeo-$r:1" "oci:$work/pull-skopeo-$r:big"
  rm -rf "$work/pull-kiln-$r" "$work/pull-skopeo-$r" "$work/registry-$r"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
