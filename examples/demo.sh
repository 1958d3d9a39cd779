#!/usr/bin/env bash
# kiln's main job on a fresh Debian machine, as the README gives it.
# Today: build kiln, then read every example Dockerfile the way the build
# will (the image build arrives with the build engine; see the issues).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "examples/demo.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

cargo build --release --locked
kiln=target/release/kiln

for dockerfile in examples/*/Dockerfile; do
  echo "== $dockerfile: instructions" >&2
  "$kiln" parse -f "$dockerfile"
  echo "== $dockerfile: stages as the build evaluates them" >&2
  "$kiln" parse --stages -f "$dockerfile"
done
