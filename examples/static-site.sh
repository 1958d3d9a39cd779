#!/usr/bin/env bash
# examples/static-site end to end, as the README gives it: make the Debian
# base images (nodejs + npm; nginx) with mmdebstrap, pin the base images and
# the `npm ci` fetch step in kiln.lock, build, and serve the site with nginx
# in kiln's sandbox on 127.0.0.1:8080 (PORT=... picks another port).
# The store is kiln's default (`kiln store path`), or $KILN_STORE.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8080}
cargo build --release --locked
kiln=$PWD/target/release/kiln
bash examples/bases.sh target/demo debian-node-build debian-nginx
"$kiln" image import target/demo/debian-node-build.tar --tag debian-node-build >&2
"$kiln" image import target/demo/debian-nginx.tar --tag debian-nginx >&2
args=(examples/static-site --build-arg NODE_IMAGE=debian-node-build --build-arg NGINX_IMAGE=debian-nginx)
"$kiln" lock "${args[@]}" >&2
digest=$("$kiln" build "${args[@]}" -t static-site | tail -n 1)
echo "image digest: $digest"
"$kiln" run static-site --network host -- sh -c \
  "sed 's/listen 8080;/listen 127.0.0.1:$port;/' /etc/nginx/nginx.conf > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g 'daemon off;'" \
  >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if page=$(curl -fsS "http://127.0.0.1:$port/" 2>/dev/null); then
    echo "HTTP answer: $(echo "$page" | grep -o '<title>.*</title>')"
    exit 0
  fi
  sleep 0.2
done
echo "examples/static-site.sh: nothing answered on 127.0.0.1:$port" >&2
exit 1
