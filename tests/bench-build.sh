#!/usr/bin/env bash
# examples/go-server built by kiln and by the peer, buildah (`buildah bud
# --timestamp 0`, which makes buildah reproducible: NOTES.md), on the same
# Debian Go base image, alternating, ROUNDS rounds:
#   cold:  every step built (base image present, build steps not cached):
#          `kiln build --no-cache` and `buildah bud --no-cache`;
#   no-op: nothing changed since the last build: both from their caches.
# Issue #6's goals: cold <= 0.8x buildah's time; no-op under 0.2 s and at
# least 20x faster than buildah's cached rebuild. When the host has Go, the
# example's `go build` alone also runs on the host (fresh build cache each
# round, same flags) in the same alternation: the floor of any cold build.
#
#   tests/bench-build.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}

for tool in buildah skopeo runc mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "bench-build: install $tool (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --locked -q
kiln=$PWD/target/release/kiln

# The base image tar, as tests/build.rs and examples/demo.sh make it.
base=target/kiln-test-cache/debian-go.tar
if [ ! -f "$base" ]; then
  mkdir -p target/kiln-test-cache
  SOURCE_DATE_EPOCH=1700000000 mmdebstrap --variant=minbase \
    --include=golang-go,ca-certificates --format=tar \
    --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' bookworm - \
    | mmtarfilter --path-exclude='/dev/*' > "$base.partial"
  mv "$base.partial" "$base"
fi

work=$(mktemp -d)
broot=$work/buildah-root
brun=$work/buildah-run
bah() { buildah --root "$broot" --runroot "$brun" --storage-driver overlay "$@"; }
cleanup() { bah rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
export KILN_STORE=$work/kiln-store SOURCE_DATE_EPOCH=0

# The same base image in both: kiln imports the tar; buildah gets kiln's
# image through an OCI layout (same layer, same digest).
"$kiln" image import "$base" --tag debian-go >/dev/null
"$kiln" image export debian-go "oci:$work/base:debian-go" >/dev/null
skopeo copy -q "oci:$work/base:debian-go" \
  "containers-storage:[overlay@$broot+$brun]localhost/debian-go:latest"

ctx=$work/go-server
cp -r examples/go-server "$ctx"
kiln_build() { "$kiln" build "$ctx" --build-arg GO_IMAGE=debian-go --progress plain "$@" 2>/dev/null | tail -n 1; }
buildah_build() {
  bah bud --runtime runc --timestamp 0 --layers --build-arg GO_IMAGE=localhost/debian-go \
    -t go-server "$@" "$ctx" 2>/dev/null | tail -n 1
}
# One untimed build each: the base trees unpacked, buildah's layers made.
kiln_build >/dev/null
buildah_build >/dev/null

host_go() {
  local cache; cache=$(mktemp -d "$work/gocache.XXXXXX")
  (cd "$ctx" && GOCACHE=$cache CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-w -s" -o "$cache/server" .)
  rm -rf "$cache"
}
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
kc=(); bc_=(); kn=(); bn=(); hg=()
for i in $(seq "$rounds"); do
  kc+=("$(secs kiln_build --no-cache)")
  bc_+=("$(secs buildah_build --no-cache)")
  if command -v go >/dev/null; then hg+=("$(secs host_go)"); fi
  kn+=("$(secs kiln_build)")
  bn+=("$(secs buildah_build)")
done
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
kcm=$(printf '%s\n' "${kc[@]}" | median); bcm=$(printf '%s\n' "${bc_[@]}" | median)
knm=$(printf '%s\n' "${kn[@]}" | median); bnm=$(printf '%s\n' "${bn[@]}" | median)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d)"
echo "cold build:  kiln median ${kcm}s  buildah median ${bcm}s  ratio $(echo "scale=2; $kcm / $bcm" | bc)x (goal <= 0.8x)"
echo "  kiln:    ${kc[*]}"
echo "  buildah: ${bc_[*]}"
if [ "${#hg[@]}" -gt 0 ]; then
  hgm=$(printf '%s\n' "${hg[@]}" | median)
  echo "  go build alone on the host: median ${hgm}s, $(echo "scale=2; $hgm / $bcm" | bc)x buildah's cold build: ${hg[*]}"
fi
echo "no-op:       kiln median ${knm}s  buildah median ${bnm}s  kiln $(echo "scale=1; $bnm / $knm" | bc)x faster (goals: < 0.2 s, >= 20x)"
echo "  kiln:    ${kn[*]}"
echo "  buildah: ${bn[*]}"
