#!/usr/bin/env bash
# Builds keykeeper's image from the Dockerfile with buildah, on the base base.sh makes,
# and saves it as an OCI archive that containerd imports (the e2e node, make dev).
# buildah's layer cache is keyed by the Dockerfile's inputs, so an unchanged context
# reuses every layer; the archive is cached by the image's ID.
# Usage: build.sh [TAG]  (default ghcr.io/keykeeper/keykeeper:<version in pyproject>)
# Prints the archive's path, then the image name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/storage.sh"
version=$(awk -F'"' '/^version *=/ {print $2; exit}' "$repo/pyproject.toml")
tag=${1:-ghcr.io/keykeeper/keykeeper:$version}
base=$(bash "$here/base.sh")
for tool in buildah podman; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y $tool" >&2; exit 1; }
done
# builds reach the package registries through the host's network and CA bundle
buildah "${storage[@]}" bud --quiet --layers --network host "${ulimits[@]}" \
  -v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg BASE="$base" --build-arg VERSION="$version" \
  -t "$tag" "$repo" >/dev/null
id=$(podman "${storage[@]}" image inspect --format '{{.Id}}' "$tag")
archive="$cache/image/keykeeper-${id:0:16}.oci.tar"
if [ ! -s "$archive" ]; then
  podman "${storage[@]}" save --quiet --format oci-archive -o "$archive.tmp" "$tag"
  mv "$archive.tmp" "$archive"
  # the three newest stay (a running node may still import an older one)
  ls -t "$cache"/image/keykeeper-*.oci.tar | tail -n +4 | xargs -r rm -f
fi
echo "$archive"
echo "$tag"
