"""A real Kubernetes control plane (upstream etcd + kube-apiserver) for tests and local use."""

from devtools.controlplane.launcher import ControlPlane, Identity

__all__ = ["ControlPlane", "Identity"]
