#!/usr/bin/env bash
# Builds a real Kubernetes node's binaries, cached per machine like the control plane:
#   kubelet, kube-proxy and kube-scheduler, from the control plane's pinned
#     k8s.io/kubernetes module (a copy of devtools/controlplane's go.mod, as e2e's
#     controller manager is built);
#   containerd v2 (daemon, runc shim, ctr) and the CNI plugins a bridge network needs
#     (bridge, host-local, loopback, portmap), from their Go modules in one throw-away
#     module that requires the exact versions;
#   crictl (cri-tools), to list and remove what the kubelet left in containerd;
#   the pause image's binary, from the kubernetes module's own build/pause/linux/pause.c.
# runc is Debian's (apt-get install runc). Prints the bin directory; a second call finds
# the cache at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cp_dir=$(cd "$here/../controlplane" && pwd)
containerd_version=v2.4.2
cni_version=v1.10.0
cri_tools_version=v1.37.0
pause_version=3.10.2

. "$cp_dir/k8s.sh"
key=$(cat "$cp_dir/go.mod" "$cp_dir/go.sum" "$cp_dir/k8s.sh" "$here/build.sh" | sha256sum | cut -c1-12)
cache=${KEYKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keykeeper}
bin="$cache/node/$k8s-containerd-$containerd_version-$key"
wanted=(kubelet kube-proxy kube-scheduler containerd containerd-shim-runc-v2 ctr crictl
  cni/bridge cni/host-local cni/loopback cni/portmap pause)
complete() { for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || return 1; done; }
if complete; then
  echo "$bin"
  exit 0
fi

tmp="$bin.tmp.$$"
mkdir -p "$tmp/cni"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0
echo "building a node ($k8s, containerd $containerd_version) into $bin (first time on this machine; minutes)" >&2

k8s_build_copy "$tmp" "$tmp/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler
pause_c="$(go env GOMODCACHE)/k8s.io/kubernetes@$k8s/build/pause/linux/pause.c"
gcc -Os -static -DVERSION="v$pause_version" -o "$tmp/pause" "$pause_c"

module="$tmp/runtime-module"
mkdir -p "$module"
cat >"$module/go.mod" <<MOD
module keykeeper.dev/nodebuild

go 1.24

require (
	github.com/containerd/containerd/v2 $containerd_version
	github.com/containernetworking/plugins $cni_version
	sigs.k8s.io/cri-tools $cri_tools_version
)
MOD
cat >"$module/tools.go" <<'GO'
//go:build tools

package nodebuild

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
GO
cdv=github.com/containerd/containerd/v2/version
cldflags="-s -w -X $cdv.Version=$containerd_version -X $cdv.Revision=$(printf '%s' "$containerd_version" | sha1sum | cut -c1-40)"
tags="no_btrfs no_devmapper no_zfs no_aufs"
(cd "$module" && GOFLAGS=-mod=mod go mod tidy \
  && GOFLAGS=-mod=mod go build -trimpath -tags "$tags" -ldflags "$cldflags" -o "$tmp/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr \
  && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$cri_tools_version" \
    -o "$tmp/" sigs.k8s.io/cri-tools/cmd/crictl \
  && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$tmp/cni/" \
    github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/bridge \
    github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/meta/portmap)
rm -rf "$module"
echo "built in $(( $(date +%s) - start ))s" >&2
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "$bin"
