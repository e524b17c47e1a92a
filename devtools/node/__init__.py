"""A real Kubernetes node beside the control plane: the upstream kubelet, kube-proxy and
kube-scheduler (from the pinned k8s.io/kubernetes module), containerd 2 with Debian's
runc, and the CNI bridge plugins, all built by ``build.sh``. Pods are containers of
real images (imported into containerd: no registry is reachable), each in its own
network namespace with its own address on the bridge; ``kubectl logs``, ``exec`` and
``port-forward`` go through the apiserver to the kubelet as on any cluster.

The control plane must have been started with ``serve_nodes=True``: the kubelet
authenticates as ``system:node:<name>`` (Node authorizer, NodeRestriction) and Pods
reach the apiserver through the ``kubernetes`` Service (kube-proxy's iptables rules).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from devtools.controlplane import ControlPlane
from devtools.controlplane.launcher import free_port
from devtools.node import config, reaper
from devtools.node.processes import Processes

HERE = Path(__file__).resolve().parent
IMAGE_TOOLS = HERE.parent / "image"
NAME = "keykeeper-node"


def binaries() -> Path:
    """The folder holding the node's binaries (built once per machine)."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def runc() -> str:
    found = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("runc is missing: apt-get install -y runc")
    return found


class Node:
    def __init__(self, plane: ControlPlane, workdir: Path, name: str = NAME) -> None:
        if not plane.serve_nodes:
            raise ValueError("start the control plane with serve_nodes=True")
        self.plane = plane
        self.name = name
        self.layout = config.Layout(workdir)
        self.procs = Processes(workdir / "logs")
        self.bin = Path()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, images: tuple[Path, ...] = ()) -> Node:
        """containerd, the images, then kubelet, kube-proxy and the scheduler; returns
        once the Node is Ready."""
        self.bin = binaries()
        reaper.reap(runc(), self.bin / "kube-proxy")  # what a killed test run's node left
        reaper.register(self.layout.workdir)
        for folder in (self.layout.cni_conf, self.layout.kubelet_root, self.layout.pod_logs):
            folder.mkdir(parents=True, exist_ok=True)
        (self.layout.cni_conf / "10-keykeeper.conflist").write_text(
            config.cni_conflist(self.layout)
        )
        self._start_containerd()
        pause = subprocess.run(
            ["bash", str(IMAGE_TOOLS / "pause.sh"), str(self.bin / "pause"), config.PAUSE_IMAGE],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout.strip()
        for archive in (Path(pause), *images):
            self.load(archive)
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_scheduler()
        self.wait_ready()
        return self

    def stop(self) -> None:
        """The kubelet first (nothing restarts), then every Pod sandbox through the CRI
        (so containerd tears down their network namespaces and CNI addresses), then the
        rest; kube-proxy's rules and the bridge go last."""
        self.procs.stop("kubelet")
        self.procs.stop("kube-scheduler")
        if self.layout.socket.exists():
            self.crictl("stopp", *self._sandboxes(), check=False)
            self.crictl("rmp", "--all", "--force", check=False)
        self.procs.stop("kube-proxy")
        self.procs.stop("containerd")
        reaper.unmount_under(self.layout.workdir)
        reaper.unregister(self.layout.workdir)
        # the bridge, its rules and kube-proxy's chains, if no other node runs
        reaper.reap(runc(), self.bin / "kube-proxy" if self.bin != Path() else None)

    # -- what tests use ---------------------------------------------------------------------

    def load(self, archive: Path) -> None:
        """Import an OCI archive into the CRI's image store (never garbage-collected)."""
        self.ctr("images", "import", "--label", "io.cri-containerd.pinned=pinned", str(archive))

    def ctr(self, *args: str, check: bool = True) -> str:
        return self._run(
            [str(self.bin / "ctr"), "--address", str(self.layout.socket), "-n", "k8s.io", *args],
            check,
        )

    def crictl(self, *args: str, check: bool = True) -> str:
        endpoint = self.layout.endpoint
        return self._run(
            [str(self.bin / "crictl"), "--runtime-endpoint", endpoint, "--image-endpoint", endpoint]
            + list(args),
            check,
        )

    def signal(self, namespace: str, pod: str, signal_name: str) -> None:
        """Send a signal to the Pod's (first) container's process, as an OOM kill or a
        stopped process would hit it."""
        status = json.loads(self.plane.kubectl("-n", namespace, "get", "pod", pod, "-o", "json"))
        container_id = status["status"]["containerStatuses"][0]["containerID"]
        self.ctr("tasks", "kill", "--signal", signal_name, container_id.split("://", 1)[1])

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        query = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        while time.monotonic() < deadline:
            out = self.plane.kubectl("get", "node", self.name, "-o", query, check=False)
            if out.strip() == "True":
                return
            if not self.procs.alive():
                break
            time.sleep(0.5)
        raise RuntimeError(f"Node {self.name} did not become Ready:\n" + self.procs.tail())

    # -- internals --------------------------------------------------------------------------

    def _run(self, argv: list[str], check: bool) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])}...: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def _sandboxes(self) -> list[str]:
        return self.crictl("pods", "-q", check=False).split()

    def _start_containerd(self) -> None:
        toml = self.layout.workdir / "containerd.toml"
        toml.write_text(config.containerd_toml(self.layout, self.bin, runc()))
        env = {**os.environ, "PATH": f"{self.bin}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
        self.procs.spawn("containerd", [str(self.bin / "containerd"), "--config", str(toml)], env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.layout.socket.exists() and self.ctr("version", check=False):
                return
            if not self.procs.alive():
                break
            time.sleep(0.2)
        raise RuntimeError("containerd did not start:\n" + self.procs.tail())

    def _kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        return self.plane.user(user, groups).kubeconfig

    def _start_kubelet(self) -> None:
        kubeconfig = self._kubeconfig(f"system:node:{self.name}", ("system:nodes",))
        settings = config.kubelet_config(self.layout, self.plane.ca.cert, free_port(), free_port())
        path = self.layout.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(settings))
        self.procs.spawn(
            "kubelet",
            [
                str(self.bin / "kubelet"),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.layout.kubelet_root}",
                f"--cert-dir={self.layout.kubelet_root / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.plane.address}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        kubeconfig = self._kubeconfig("system:kube-proxy")
        settings = config.kube_proxy_config(kubeconfig, self.name, free_port(), free_port())
        path = self.layout.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(settings))
        self.procs.spawn("kube-proxy", [str(self.bin / "kube-proxy"), f"--config={path}", "--v=1"])

    def _start_scheduler(self) -> None:
        kubeconfig = self._kubeconfig("system:kube-scheduler")
        self.procs.spawn(
            "kube-scheduler",
            [
                str(self.bin / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )
