#!/usr/bin/env bash
# The tests that run kiln's sandbox and builds, again as a normal user
# (issue #4: "as root in CI, and as a normal user where the kernel allows").
# Run as root (tests/run.sh does): it makes a system user with subordinate
# ids, then runs the already built test binaries as that user three ways:
#   own namespace:  as the user; the kiln command enters its own user
#                   namespace with the user's subordinate ids (what a normal
#                   user with /etc/subuid ranges gets)
#   single id:      KILN_USERNS=0: the user's own uid alone, as root inside
#                   (what a user without subordinate ids gets); tests that
#                   need other owners say why they skip
#   kiln unshare:   the test process itself as root of kiln's own namespace,
#                   so the library-level tests (USER 1000, chown) run too
set -euo pipefail
cd "$(dirname "$0")/.."

user=${KILN_TEST_USER:-kiln-test}
[ "$(id -u)" = 0 ] || { echo "tests/unprivileged.sh: run as root (it creates the user $user)" >&2; exit 1; }
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
fi
# A range far above the usual useradd allocations (100000 + 65536 n);
# usermod refuses to add one to a file that does not exist yet.
touch /etc/subuid /etc/subgid
grep -q "^$user:" /etc/subuid || usermod --add-subuids 3000000-3065535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 3000000-3065535 "$user"

kiln=$PWD/target/debug/kiln
if ! runuser -u "$user" -- test -r Cargo.toml -a -x "$kiln"; then
  echo "tests/unprivileged.sh: $user cannot read $PWD (make the checkout readable by other users)" >&2
  exit 1
fi

# cargo names each test binary: "Executable tests/NAME.rs (target/debug/deps/NAME-HASH)".
mapfile -t bins < <(cargo test --workspace --no-run 2>&1 |
  sed -n 's#^ *Executable tests/\(sandbox\|build\|fetch\|store\|image\|diff\)\.rs (\(.*\))$#\2#p')
[ "${#bins[@]}" = 6 ] || { echo "tests/unprivileged.sh: expected 6 test binaries, found ${#bins[@]}" >&2; exit 1; }

home=$(mktemp -d)
chown "$user" "$home"
trap 'rm -rf "$home"' EXIT
failed=0
for mode in "own namespace" "single id" "kiln unshare"; do
  for bin in "${bins[@]}"; do
    env=(HOME="$home" KILN_TEST_REQUIRE_SANDBOX=1 KILN_TEST_REQUIRE_TOOLS=1)
    wrap=()
    case $mode in
      "single id") env+=(KILN_USERNS=0) ;;
      "kiln unshare") wrap=("$kiln" unshare) ;;
    esac
    name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
    echo "tests/unprivileged.sh: $mode: $name" >&2
    if ! runuser -u "$user" -- env "${env[@]}" "${wrap[@]}" "$bin" --test-threads=2 >"$home/out" 2>&1; then
      cat "$home/out" >&2
      failed=1
    else
      grep -E '^test result' "$home/out" >&2 || true
    fi
  done
done
exit "$failed"
