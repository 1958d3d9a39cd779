#!/usr/bin/env bash
# Sandbox start-to-exit overhead (issue #4): `kiln run --rootfs R -- /bin/true`
# against `unshare --user --map-root-user --mount --net --pid --fork true`,
# alternating (hyperfine runs each command's batch in turn, several rounds).
# Goal: kiln within 2x of unshare. Needs hyperfine and busybox-static.
# Usage: tests/bench-sandbox.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}

for tool in hyperfine /bin/busybox; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine busybox-static >&2
    else
      echo "bench-sandbox.sh: install hyperfine and busybox-static" >&2; exit 1
    fi
  fi
done

cargo build --release --quiet
kiln=$PWD/target/release/kiln
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A busybox root filesystem; as root it is owned by kiln's shifted ids.
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in sh true; do ln -s busybox "$root/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
if [ "$(id -u)" = 0 ]; then chown -hR 1879048192:1879048192 "$root"; fi

"$kiln" run --rootfs "$root" -- /bin/true   # fail early, not in hyperfine

results=$tmp/results.csv
for i in $(seq "$rounds"); do
  hyperfine --style none --warmup 5 --runs 40 -N \
    --export-csv "$tmp/round$i.csv" \
    "unshare --user --map-root-user --mount --net --pid --fork true" \
    "$kiln run --rootfs $root -- /bin/true" >/dev/null
  tail -n +2 "$tmp/round$i.csv" >> "$results"
done

# Median of the rounds' means, per command.
awk -F, '
  { n[$1]++; v[$1, n[$1]] = $2 }
  END {
    for (c in n) {
      k = n[c]; for (i = 1; i <= k; i++) a[i] = v[c, i]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      med[c] = a[int((k + 1) / 2)]
      printf "%-70s %7.2f ms (median of %d rounds of 40)\n", c, med[c] * 1000, k
      if (c ~ /^unshare/) u = med[c]; else r = med[c]
    }
    if (u > 0) printf "ratio kiln/unshare: %.2fx (goal: <= 2x)\n", r / u
  }' "$results"
