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

k8s=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$cp_dir/go.mod")
key=$(cat "$cp_dir/go.mod" "$cp_dir/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
cache=${KEYKEEPER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keykeeper}
bin="$cache/e2e/$k8s-helm-$helm_version-$key"
if [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi

minor=${k8s#v1.}; minor=${minor%%.*}
commit=$(printf '%s' "$k8s" | sha1sum | cut -c1-40)
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z -X $pkg.gitCommit=$commit"

tmp="$bin.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0
echo "building kube-controller-manager $k8s and helm $helm_version into $bin (first time on this machine; minutes)" >&2
# in a copy of the control plane's module: -mod=mod adds go.sum lines for the
# controller manager's own dependencies, and the control plane's cache key is go.sum
kcm_module="$tmp/kcm-module"
mkdir -p "$kcm_module/cmd"
cp "$cp_dir/go.mod" "$cp_dir/go.sum" "$cp_dir/tools.go" "$kcm_module/"
cp -r "$cp_dir/cmd/etcd" "$kcm_module/cmd/"
(cd "$kcm_module" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager)
rm -rf "$kcm_module"

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
