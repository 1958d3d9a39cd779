#!/usr/bin/env bash
# Makes the Debian base images the examples build on, as root filesystem
# tars for `kiln image import`, with mmdebstrap from Debian's archive.
# Reproducible: SOURCE_DATE_EPOCH is fixed, /dev entries are dropped, and
# /etc/resolv.conf and /etc/hostname (which would leak the build host) are
# removed. Existing tars are kept.
#
#   examples/bases.sh DIR NAME...
#
#   debian-go          golang-go, ca-certificates           (examples/go-server)
#   debian-node-build  nodejs, npm, python3, make, g++,     (builder of
#                      ca-certificates                       static-site, node-native)
#   debian-node        nodejs, ca-certificates, user `node`  (runtime of node-native)
#   debian-nginx       nginx                                 (runtime of static-site)
#
# The node and nginx images are kept small as NOTES.md says: no recommended
# packages, no documentation, man pages or translations.
set -euo pipefail
if [ "$#" -lt 2 ]; then
  echo "usage: examples/bases.sh DIR NAME..." >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
small=(
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
for name in "$@"; do
  tar="$dir/$name.tar"
  [ -f "$tar" ] && continue
  hooks=(--customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname')
  case "$name" in
    # The same command as tests/build.rs's go_base_tar, so both share it.
    debian-go) include=golang-go,ca-certificates opts=() ;;
    debian-node-build) include=nodejs,npm,python3,make,g++,ca-certificates opts=("${small[@]}") ;;
    debian-node)
      include=nodejs,ca-certificates opts=("${small[@]}")
      # The `node` user (uid 1000) of the classic node image; written out,
      # not with useradd, so no date of today ends up in /etc/shadow.
      hooks+=(--customize-hook='echo "node:x:1000:1000:node:/home/node:/bin/sh" >> "$1"/etc/passwd && echo "node:x:1000:" >> "$1"/etc/group && echo "node:*:19675:0:99999:7:::" >> "$1"/etc/shadow && install -d -o 1000 -g 1000 -m 0755 "$1"/home/node')
      ;;
    debian-nginx) include=nginx opts=("${small[@]}") ;;
    *)
      echo "examples/bases.sh: unknown base image $name" >&2
      exit 2
      ;;
  esac
  echo "examples/bases.sh: making $tar from Debian's archive ($include)" >&2
  SOURCE_DATE_EPOCH=1700000000 mmdebstrap --variant=minbase --include="$include" \
    --format=tar "${opts[@]}" "${hooks[@]}" bookworm - \
    | mmtarfilter --path-exclude='/dev/*' > "$tar.partial"
  mv "$tar.partial" "$tar"
done
