#!/usr/bin/env bash
# Makes the image's base from Debian packages: bookworm minbase with python3,
# python3-venv and ca-certificates, security and point updates included, by mmdebstrap
# (no registry is needed: the archive is the same one a registry's debian image is made
# from). Imported into the container storage as $BASE; its package list is kept beside
# the tarball (base.packages). The tarball is cached per machine and per week: a later
# week re-makes it, so the base picks up Debian's security updates.
# Prints the image name. A second call in the same week finds it at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/storage.sh"
name=localhost/keykeeper-base:bookworm
week=$(date -u +%G-w%V)
key=$(sha256sum "$here/base.sh" | cut -c1-12)
dir="$cache/image/base-$week-$key"
if [ ! -s "$dir/base.tar" ]; then
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is missing: apt-get install -y mmdebstrap" >&2; exit 1; }
  mkdir -p "$dir.tmp"
  echo "making the Debian base image (bookworm minbase + python3) into $dir" >&2
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='chroot "$1" dpkg-query -W -f "\${Package} \${Version}\n" > "$1/.packages"' \
    --customize-hook='mv "$1/.packages" '"$dir.tmp/base.packages" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$dir.tmp/base.tar" "$mirror" \
    "deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main" \
    "deb $mirror bookworm-updates main"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
stamp="$dir/imported-$(sha256sum "$dir/base.tar" | cut -c1-16)"
if ! podman "${storage[@]}" image exists "$name" || [ ! -e "$stamp" ]; then
  podman "${storage[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' "$dir/base.tar" "$name" >/dev/null
  touch "$stamp"
fi
echo "$name"
