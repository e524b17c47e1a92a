"""Start and stop a real control plane: upstream etcd and kube-apiserver, built from the
pinned Go modules beside this file (``build.sh``), the way envtest runs one.

The apiserver serves TLS on a free loopback port with ``--authorization-mode=RBAC``;
the admin identity is a client certificate in ``system:masters``. Other identities are
client certificates (:meth:`ControlPlane.user`) or ServiceAccount tokens from the
TokenRequest API (:meth:`ControlPlane.service_account`), with no rights until RBAC
grants them some. There is no kube-controller-manager: keykeeper needs neither garbage
collection nor finished namespace deletion, and a namespace that stays Terminating is
exactly what the tests of terminating namespaces need.

Every process is started in its own process group with PR_SET_PDEATHSIG, so nothing
outlives the Python process that started it, even on SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools.controlplane.pki import Authority, service_account_keys

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
START_TIMEOUT = 120.0
SERVICE_RANGE = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"  # the ``kubernetes`` Service's ClusterIP in SERVICE_RANGE


@dataclass(frozen=True)
class Identity:
    """Who a kubeconfig speaks as."""

    name: str
    kubeconfig: Path


def binaries() -> Path:
    """The directory holding etcd, kube-apiserver and kubectl (built once per machine)."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def completed_by(event: dict[str, Any], user: str) -> bool:
    """Whether an apiserver audit event is ``user``'s request, answered."""
    return bool(
        event.get("user", {}).get("username") == user and event.get("stage") == "ResponseComplete"
    )


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, below the kernel's ephemeral range.

    A port the kernel picks for ``bind(0)`` comes from the ephemeral range, where it
    can be handed out again (to us, or as the source port of an outgoing connection,
    e.g. the apiserver's own connections to etcd) before the server binds it; that
    made the apiserver fail with "address already in use" now and then.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12_000), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def host_address() -> str:
    """The address this machine reaches others from (its default route's source), where
    a node's Pods reach the apiserver; loopback is not reachable from a Pod."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("203.0.113.1", 9))  # TEST-NET-3: no packet is sent, a route is chosen
            address = str(sock.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        raise RuntimeError("no route off this machine: a node's Pods could not reach the apiserver")
    return address


def die_with_parent() -> None:
    """preexec_fn of every daemon a test starts: its own session, killed with us."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ControlPlane:
    def __init__(
        self,
        workdir: Path | None = None,
        crds: Path | None = REPO / "crds",
        *,
        serve_nodes: bool = False,
    ) -> None:
        """``serve_nodes``: the apiserver also serves a real node (devtools.node): it
        listens on the host's address and advertises it as the ``kubernetes`` Service's
        endpoint, authorizes kubelets with the Node authorizer (and NodeRestriction),
        reaches them with a client certificate, and mounts ServiceAccount tokens."""
        self.serve_nodes = serve_nodes
        self.address = host_address() if serve_nodes else "127.0.0.1"
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keykeeper-cp-"))
        self.crds = crds
        self.logs = self.workdir / "logs"
        self.bin: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.server = ""
        self.admin: Identity | None = None
        self.startup_seconds = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        self.bin = binaries()
        began = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        self.ca = Authority(pki)
        sans = (self.address, SERVICE_IP) if self.serve_nodes else ()
        serving = self.ca.issue("apiserver", "kube-apiserver", server=True, addresses=sans)
        admin = self.ca.issue("admin", "keykeeper-admin", organizations=("system:masters",))
        sa = service_account_keys(pki)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=keykeeper-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=keykeeper-test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=8589934592",  # bench/scale.py's 100,000 keys fit
                "--log-level=warn",
            ],
        )
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                *self._serving_flags(),
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--watch-cache=true",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.logs / 'audit.log'}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=100000",  # MB: never rotated under a test or a bench
                "--v=1",
            ],
        )
        self.admin = self._write_kubeconfig("admin", cert=admin.cert, key=admin.key)
        self._wait_ready(admin.cert, admin.key)
        self.startup_seconds = time.monotonic() - began
        if self.crds is not None and self.crds.is_dir() and any(self.crds.glob("*.yaml")):
            self.install_crds(self.crds)
        return self

    def stop(self) -> None:
        for proc in reversed(list(self._procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()
        if self._own_workdir and not os.environ.get("KEYKEEPER_KEEP_CLUSTER"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- identities ------------------------------------------------------------------------

    def user(self, name: str, groups: tuple[str, ...] = ()) -> Identity:
        """A client-certificate identity with no rights beyond what RBAC grants it."""
        pair = self.ca.issue(f"user-{name}", name, organizations=groups)
        return self._write_kubeconfig(f"user-{name}", cert=pair.cert, key=pair.key)

    def service_account(
        self, namespace: str, name: str, seconds: int = 86400, *, pod: tuple[str, str] | None = None
    ) -> Identity:
        """A ServiceAccount's identity, from a token the TokenRequest API issues; with
        ``pod`` (name, uid) bound to that Pod, as a kubelet mounts it (the apiserver then
        names the Pod in the request's user info)."""
        self.kubectl("create", "namespace", namespace, check=False)
        self.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
        bound = (
            []
            if pod is None
            else [
                "--bound-object-kind=Pod",
                f"--bound-object-name={pod[0]}",
                f"--bound-object-uid={pod[1]}",
            ]
        )
        token = self.kubectl(
            "-n", namespace, "create", "token", name, f"--duration={seconds}s", *bound
        ).strip()
        who = f"sa-{namespace}-{name}" + (f"-{pod[0]}" if pod else "")
        return self._write_kubeconfig(who, token=token)

    def kubectl(
        self,
        *args: str,
        identity: Identity | None = None,
        check: bool = True,
        input: str | None = None,
    ) -> str:
        assert self.bin is not None
        assert self.admin is not None
        who = identity or self.admin
        done = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={who.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout if done.returncode == 0 else done.stderr

    def install_crds(self, directory: Path) -> None:
        self.kubectl("apply", "--server-side", "-f", str(directory))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(directory))

    # -- diagnostics -----------------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for name in self._procs:
            path = self.logs / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self._procs.values())

    # -- internals -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str]) -> None:
        """Run one more control-plane process (the e2e suite's controller manager),
        logged and stopped with the others."""
        self._spawn(name, argv)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:  # the child keeps its own copy
            self._procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )

    def _write_kubeconfig(
        self,
        name: str,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        token: str | None = None,
    ) -> Identity:
        user: dict[str, Any] = (
            {"token": token}
            if token
            else {
                "client-certificate": str(cert),
                "client-key": str(key),
            }
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "keykeeper-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca.cert)},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "keykeeper-test", "user": name}}],
            "current-context": name,
        }
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return Identity(name, path)

    def _serving_flags(self) -> list[str]:
        if not self.serve_nodes:
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
            ]
        kubelet_client = self.ca.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=("system:masters",),
        )
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.address}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP",  # a node's name is in no DNS here
        ]

    def _audit_policy(self) -> Path:
        """The apiserver's own audit log: who did what, so tests can count API writes."""
        path = self.workdir / "audit-policy.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}],
                }
            )
        )
        return path

    def audit_events(self, user: str) -> list[dict[str, Any]]:
        """ResponseComplete audit events of one user, oldest first."""
        path = self.logs / "audit.log"
        if not path.exists():
            return []
        events = (json.loads(line) for line in path.read_text().splitlines())
        return [event for event in events if completed_by(event, user)]

    def _wait_ready(self, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(cert), str(key))
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("the control plane exited while starting:\n" + self.log_tail())
            try:
                with urllib.request.urlopen(self.server + "/readyz", context=context, timeout=5):
                    pass
                with urllib.request.urlopen(
                    self.server + "/api/v1/namespaces/default", context=context, timeout=5
                ) as answer:
                    json.load(answer)
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise RuntimeError(
            f"the apiserver was not ready in {START_TIMEOUT}s ({last}):\n" + self.log_tail()
        )
