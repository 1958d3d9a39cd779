#!/usr/bin/env bash
# examples/node-native end to end, as the README gives it: make the Debian
# base images (a builder with nodejs, npm, python3, make and g++; a runtime
# with nodejs only) with mmdebstrap, pin them and the `npm ci` fetch step in
# kiln.lock, build (node-gyp compiles the C addon against /usr's node
# headers), and run the service in kiln's sandbox on 127.0.0.1:8080
# (PORT=... picks another port).
# The store is kiln's default (`kiln store path`), or $KILN_STORE.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8080}
cargo build --release --locked
kiln=$PWD/target/release/kiln
bash examples/bases.sh target/demo debian-node-build debian-node
"$kiln" image import target/demo/debian-node-build.tar --tag debian-node-build >&2
"$kiln" image import target/demo/debian-node.tar --tag debian-node >&2
args=(examples/node-native --build-arg BUILD_IMAGE=debian-node-build --build-arg NODE_IMAGE=debian-node)
"$kiln" lock "${args[@]}" >&2
digest=$("$kiln" build "${args[@]}" -t node-native | tail -n 1)
echo "image digest: $digest"
"$kiln" run node-native --network host -e "PORT=$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if answer=$(curl -fsS "http://127.0.0.1:$port/hello" 2>/dev/null); then
    echo "HTTP answer: $answer"
    exit 0
  fi
  sleep 0.2
done
echo "examples/node-native.sh: nothing answered on 127.0.0.1:$port" >&2
exit 1
