#!/usr/bin/env bash
# Builds the pinned upstream etcd, kube-apiserver and kubectl into a per-machine
# cache keyed by the pinned versions and go.sum, and prints the bin directory.
# A second call finds the cache and returns at once. Honours KUBEBUILDER_ASSETS
# (the envtest convention): if it holds the binaries, they are used as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

. "$here/k8s.sh"
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here/k8s.sh" "$here/cmd/etcd/main.go" | sha256sum | cut -c1-12)
cache=${KEYKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keykeeper}
bin="$cache/controlplane/$k8s-$key"
if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -x "$bin/kubectl" ]; then
  echo "$bin"
  exit 0
fi

ldflags=$(k8s_ldflags)

tmp="$bin.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=-mod=mod
echo "building etcd, kube-apiserver and kubectl $k8s into $bin (first time on this machine; several minutes)" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/etcd" ./cmd/etcd
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
echo "built in $(( $(date +%s) - start ))s" >&2
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "$bin"
