#!/usr/bin/env bash
# The whole test suite, as the README gives it. Installs what the tests need
# (Debian packages, when root), then runs every test. Fails loudly if a tool
# cannot be installed: the tests that need it refuse to skip under this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real.
#   nix-bin: `nix-instantiate --parse flake.nix`
#   busybox-static: /bin/busybox, the sandbox tests' root filesystem and the project-made busybox image
#   skopeo, umoci, podman: accept the layouts and archives kiln writes (tests/image.rs); make the images kiln diff compares (tests/diff.rs)
#   mmdebstrap, golang-go: the Debian base images of the examples (examples/bases.sh;
#     tests/build.rs, tests/examples.rs); golang-go for go-server's checks
#   docker-registry: the real registry kiln pulls from and pushes to (tests/registry.rs)
#   apache2-utils: `htpasswd -Bbn`, the registry's Basic auth users (tests/registry.rs)
#   openssl: signs the JWTs of the token server in tests/registry.rs
#   curl: PUTs image indexes to the registry (tests/registry.rs)
#   uidmap: newuidmap/newgidmap, kiln's own user namespace for a normal user (tests/unprivileged.sh)
packages=(nix-bin busybox-static skopeo umoci podman mmdebstrap golang-go docker-registry apache2-utils openssl curl uidmap)
tools=(nix-instantiate /bin/busybox skopeo umoci podman mmdebstrap go docker-registry htpasswd openssl curl newuidmap)

missing=()
for i in "${!tools[@]}"; do
  if [ "${tools[$i]#/}" != "${tools[$i]}" ]; then
    [ -x "${tools[$i]}" ] || missing+=("${packages[$i]}")
  else
    command -v "${tools[$i]}" >/dev/null 2>&1 || missing+=("${packages[$i]}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "tests/run.sh: missing tools: ${missing[*]}" >&2
    echo "tests/run.sh: install the Debian packages ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# Under this script every test runs for real: nothing may skip for a missing tool.
export KILN_TEST_REQUIRE_TOOLS=1
# As root the sandbox can always run: its tests must not skip (STYLE §6).
if [ "$(id -u)" = 0 ]; then
  export KILN_TEST_REQUIRE_SANDBOX=1
fi
# In CI the BuildKit conformance files beside the project must be there.
if [ "${CI:-}" = true ]; then
  export KILN_REQUIRE_CONFORMANCE=1
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
cargo test --doc --workspace
# As root: the sandbox, build, fetch, store, image and diff tests again as a
# normal user, with and without subordinate ids and under `kiln unshare`.
if [ "$(id -u)" = 0 ]; then
  bash tests/unprivileged.sh
fi
# The slow end-to-end examples (Debian base images made once by
# examples/bases.sh and cached under target/kiln-test-cache): go-server,
# static-site and node-native, each locked, built, carried in a bundle to a
# fresh store and built again there offline.
cargo test --test build --test examples -- --ignored
