"""What the e2e suite adds to the control plane: the controller manager, helm, and a
view of the operator's Pods on the real node (pods.py; the node is devtools.node)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devtools.controlplane import ControlPlane
from devtools.controlplane.launcher import free_port

HERE = Path(__file__).resolve().parent


def tools() -> Path:
    """The folder holding kube-controller-manager and helm (built once per machine)."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


# what a Deployment needs to become Pods, a namespace to be deleted, owned objects to
# be collected, each namespace to get kube-root-ca.crt and its default ServiceAccount,
# a PodDisruptionBudget its status, and a Service its EndpointSlices (kube-proxy routes
# by them), and a Ready Node its not-ready taint lifted
CONTROLLERS = (
    "endpointslice-controller",
    "node-lifecycle-controller",  # lifts the not-ready taint a new Node registers with
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
    "serviceaccount-controller",
)


def start_controller_manager(plane: ControlPlane, bin_dir: Path) -> None:
    assert plane.admin is not None
    plane.spawn(
        "kube-controller-manager",
        [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={plane.admin.kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--leader-elect=false",
            f"--root-ca-file={plane.ca.cert}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--v=1",
        ],
    )


NAMESPACE = "keykeeper-system"
IMAGE = "ghcr.io/keykeeper/keykeeper"
CHART = HERE.parents[1] / "charts" / "keykeeper"


class Helm:
    """helm (built from its Go module) as the control plane's admin."""

    def __init__(self, binary: Path, plane: ControlPlane) -> None:
        assert plane.admin is not None
        self.binary = binary
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(plane.workdir),
            "KUBECONFIG": str(plane.admin.kubeconfig),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=400
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}")
        return done


def restricted_namespace(plane: ControlPlane, name: str = NAMESPACE) -> None:
    """The operator's namespace, with Pod Security ``restricted`` enforced."""
    plane.kubectl("create", "namespace", name, check=False)
    plane.kubectl(
        "label",
        "--overwrite",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
