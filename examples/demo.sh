#!/usr/bin/env bash
# kiln's main job on a fresh Debian machine, as the README gives it:
# build kiln; read every example Dockerfile as the build does; make the Go
# builder base image from Debian's archive (mmdebstrap, reproducible with
# SOURCE_DATE_EPOCH); build examples/go-server into a FROM scratch image;
# print its digest and size; run it in kiln's sandbox and show one HTTP answer.
# The store is kiln's default (`kiln store path`), or $KILN_STORE.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "examples/demo.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
for tool in mmdebstrap curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap curl >&2
    else
      echo "examples/demo.sh: install mmdebstrap and curl (as root: apt-get install mmdebstrap curl)" >&2
      exit 1
    fi
  fi
done

cargo build --release --locked
kiln=$PWD/target/release/kiln

for dockerfile in examples/*/Dockerfile; do
  echo "== $dockerfile: stages as the build evaluates them" >&2
  "$kiln" parse --stages -f "$dockerfile" >&2
done

# The Go builder base image: Debian bookworm with golang-go and
# ca-certificates, made once and cached under target/.
base=target/demo/debian-go.tar
if [ ! -f "$base" ]; then
  echo "== making the Go base image from Debian's archive (about a minute)" >&2
  mkdir -p target/demo
  SOURCE_DATE_EPOCH=1700000000 mmdebstrap --variant=minbase \
    --include=golang-go,ca-certificates --format=tar \
    --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' bookworm - \
    | mmtarfilter --path-exclude='/dev/*' > "$base.partial"
  mv "$base.partial" "$base"
fi
"$kiln" image import "$base" --tag debian-go >&2

echo "== building examples/go-server" >&2
digest=$("$kiln" build examples/go-server --build-arg GO_IMAGE=debian-go -t go-server | tail -n 1)
echo "image digest: $digest"
"$kiln" image ls | grep -E '^(NAME|go-server)' || true

echo "== running it in kiln's sandbox" >&2
"$kiln" run go-server --network host >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if answer=$(curl -fsS http://127.0.0.1:8080/ 2>/dev/null); then
    echo "HTTP answer: $answer"
    exit 0
  fi
  sleep 0.2
done
echo "examples/demo.sh: the go-server image did not answer on 127.0.0.1:8080" >&2
exit 1
