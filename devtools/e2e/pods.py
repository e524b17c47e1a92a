"""The operator's Pods on the real node, as the e2e tests look at them: their address
and restart count from the API, their logs through ``kubectl logs`` (the kubelet's
files, read through the apiserver), and a signal to the container's process through
containerd, as an OOM kill or a stopped process would hit it."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass

from devtools.controlplane import ControlPlane
from devtools.node import Node


@dataclass(frozen=True)
class PodView:
    ip: str
    restarts: int


class Pods:
    def __init__(self, plane: ControlPlane, node: Node, namespace: str) -> None:
        self.plane = plane
        self.node = node
        self.namespace = namespace

    def pods(self) -> dict[str, PodView]:
        found = json.loads(
            self.plane.kubectl(
                "-n",
                self.namespace,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=keykeeper",
                "-o",
                "json",
            )
        )["items"]
        return {
            p["metadata"]["name"]: PodView(
                p["status"].get("podIP", ""),
                sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", [])),
            )
            for p in found
        }

    def log_of(self, pod: str) -> str:
        """Everything the Pod's container wrote: the instance before its last restart
        (if any), then the running one."""
        kubectl = self.plane.kubectl
        previous = kubectl("-n", self.namespace, "logs", pod, "--previous", check=False)
        if "previous terminated container" in previous and "not found" in previous:
            previous = ""
        return previous + kubectl("-n", self.namespace, "logs", pod, check=False)

    def follow(self, pod: str) -> Follower:
        """The Pod's log as it is written, kept after the Pod is gone (the API serves
        no log of a deleted Pod: a cluster ships them, as this does)."""
        return Follower(self.plane, self.namespace, pod)

    def kill(self, pod: str, signal_name: str) -> None:
        self.node.signal(self.namespace, pod, signal_name)

    @property
    def errors(self) -> list[str]:
        """What went wrong on the node itself (a daemon that exited)."""
        return [] if self.node.procs.alive() else [self.node.procs.tail()]


class Follower:
    """``kubectl logs -f`` of one Pod, read by a thread until its container ends."""

    def __init__(self, plane: ControlPlane, namespace: str, pod: str) -> None:
        assert plane.bin is not None and plane.admin is not None
        self._proc = subprocess.Popen(
            [
                str(plane.bin / "kubectl"),
                f"--kubeconfig={plane.admin.kubeconfig}",
                *("-n", namespace, "logs", "-f", pod),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.append(line)

    def stop(self, wait: float = 10.0) -> str:
        """What was read; waits up to ``wait`` seconds for the stream to end first."""
        self._thread.join(timeout=wait)
        if self._proc.poll() is None:
            self._proc.kill()
        self._thread.join(timeout=5)
        self._proc.wait(timeout=5)
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        return "".join(self._lines)
