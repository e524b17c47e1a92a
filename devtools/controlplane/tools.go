//go:build tools

// Package controlplane only records which upstream commands build.sh compiles,
// so that `go mod tidy` keeps their dependencies in go.sum.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
