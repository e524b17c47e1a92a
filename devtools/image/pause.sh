#!/usr/bin/env bash
# Makes the pause image (the Pod sandbox's process) from the pause binary the node
# build compiled from the kubernetes source: FROM scratch, /pause, as upstream's.
# Usage: pause.sh PAUSE_BINARY TAG. Prints the OCI archive's path (cached by the binary).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/storage.sh"
binary=$1 tag=$2
archive="$cache/image/pause-$(sha256sum "$binary" | cut -c1-16).oci.tar"
if [ ! -s "$archive" ]; then
  mkdir -p "$cache/image"
  c=$(buildah "${storage[@]}" from scratch)
  trap 'buildah "${storage[@]}" rm "$c" >/dev/null' EXIT
  buildah "${storage[@]}" copy --quiet "$c" "$binary" /pause >/dev/null
  buildah "${storage[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  buildah "${storage[@]}" commit --quiet "$c" "$tag" >/dev/null
  podman "${storage[@]}" save --quiet --format oci-archive -o "$archive.tmp" "$tag"
  mv "$archive.tmp" "$archive"
fi
echo "$archive"
