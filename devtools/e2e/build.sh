#!/usr/bin/env bash
# Builds what the e2e suite adds to the control plane, cached per machine like it:
#   kube-controller-manager, from the same pinned k8s.io/kubernetes module (go.mod of
#     devtools/controlplane), so Deployments become ReplicaSets become Pods;
#   helm, from its Go module (helm.sh/helm/v3 at HELM_VERSION), built from a throw-away
#     module that requires the exact version (the proxy refuses `go install pkg@version`'s
#     version list for some modules; see devtools/peers.py).
# Prints the bin directory holding both. A second call finds the cache at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cp_dir=$(cd "$here/../controlplane" && pwd)
helm_version=v3.22.0

. "$cp_dir/k8s.sh"
key=$(cat "$cp_dir/go.mod" "$cp_dir/go.sum" "$cp_dir/k8s.sh" "$here/build.sh" | sha256sum | cut -c1-12)
cache=${KEYKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keykeeper}
bin="$cache/e2e/$k8s-helm-$helm_version-$key"
if [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi

tmp="$bin.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0
echo "building kube-controller-manager $k8s and helm $helm_version into $bin (first time on this machine; minutes)" >&2
k8s_build_copy "$tmp" "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager

module="$tmp/helm-module"
mkdir -p "$module"
printf 'module keykeeper.dev/helmbuild\n\ngo 1.24\n\nrequire helm.sh/helm/v3 %s\n' "$helm_version" >"$module/go.mod"
printf '//go:build tools\n\npackage helmbuild\n\nimport _ "helm.sh/helm/v3/cmd/helm"\n' >"$module/tools.go"
# as helm's Makefile: its version, and the Kubernetes minor its modules speak (the
# default for `helm template` and `helm lint` when no cluster is asked)
hldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
hldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
hldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
hldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"
(cd "$module" && GOFLAGS=-mod=mod go mod tidy && GOFLAGS=-mod=mod go build -trimpath -ldflags "$hldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm)
rm -rf "$module"
echo "built in $(( $(date +%s) - start ))s" >&2
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
echo "$bin"
