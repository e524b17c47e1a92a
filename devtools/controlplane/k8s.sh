# Sourced by the build scripts of every binary built from the pinned k8s.io/kubernetes
# module (build.sh here, devtools/e2e/build.sh, devtools/node/build.sh): the version,
# the ldflags that stamp it as upstream's release scripts do, and a build in a copy of
# this module (-mod=mod adds go.sum lines for a command's own dependencies, and the
# control plane's cache key is its go.sum, so the copy keeps it unchanged).
cp_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$cp_dir/go.mod")
k8s_minor=${k8s#v1.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags() {
  local commit pkg=k8s.io/component-base/version client=k8s.io/client-go/pkg/version flags
  commit=$(printf '%s' "$k8s" | sha1sum | cut -c1-40)
  flags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z -X $pkg.gitCommit=$commit"
  flags+=" -X $client.gitVersion=$k8s -X $client.gitMajor=1 -X $client.gitMinor=$k8s_minor"
  printf '%s' "$flags"
}
# k8s_build_copy WORKDIR OUT PACKAGE...: go build PACKAGEs into OUT (a folder ending
# in /, or a file) from a copy of this module made under WORKDIR, removed after.
k8s_build_copy() {
  local work=$1/k8s-module out=$2
  shift 2
  mkdir -p "$work/cmd"
  cp "$cp_dir/go.mod" "$cp_dir/go.sum" "$cp_dir/tools.go" "$work/"
  cp -r "$cp_dir/cmd/etcd" "$work/cmd/"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$(k8s_ldflags)" -o "$out" "$@")
  rm -rf "$work"
}
