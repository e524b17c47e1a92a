"""The peer controllers of bench/fanout.py on the same control plane: how each is set up
and what the driver posts to it for N keys x 3 target namespaces.

* Sealed Secrets: its controller makes a sealing key at start; the driver seals each
  value to it (the controller's own hybrid format, strict scope: RSA-OAEP(SHA-256) of a
  session key labelled ``namespace/name``, AES-256-GCM under it with a zero nonce, as
  ``pkg/crypto.HybridEncrypt``) and posts one SealedSecret per Secret wanted;
* External Secrets Operator: a ClusterSecretStore with its ``fake`` provider, and one
  ExternalSecret per Secret wanted. Run with its defaults (``--concurrent 1``).

Each runs under a ServiceAccount of its own, bound to cluster-admin (a benchmark, not a
deployment), so the apiserver's audit log counts its requests apart.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from devtools.controlplane import ControlPlane
from devtools.controlplane.launcher import free_port
from devtools.peers import EXTERNAL_SECRETS, SEALED_SECRETS, build, in_cluster_command

Item = tuple[str, dict[str, Any]]  # (collection path, body) for the driver to POST


@dataclass
class Peer:
    name: str
    user: str  # as the audit log names it
    process: subprocess.Popen[bytes]
    namespaces: list[str]  # where its Secrets appear (and nothing else's)
    items: list[Item]


def _service_account(plane: ControlPlane, namespace: str, name: str) -> str:
    plane.kubectl("create", "namespace", namespace, check=False)
    plane.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
    plane.kubectl(
        "create",
        "clusterrolebinding",
        f"bench-{name}",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{name}",
        check=False,
    )
    return f"system:serviceaccount:{namespace}:{name}"


def _targets(plane: ControlPlane, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}-t{n}" for n in range(count)]
    for ns in names:
        plane.kubectl("create", "namespace", ns, check=False)
    return names


def _quietly(plane: ControlPlane, *args: str) -> str:
    """kubectl's output, or "" if it failed (kubectl with check=False returns stderr)."""
    try:
        return plane.kubectl(*args)
    except RuntimeError:
        return ""


def _wait(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- Sealed Secrets ------------------------------------------------------------------------


def hybrid_encrypt(public: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """Sealed Secrets' ``HybridEncrypt``: u16 length, RSA-OAEP ciphertext, AES-GCM."""
    session = os.urandom(32)
    wrapped = public.encrypt(
        session,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    sealed = AESGCM(session).encrypt(b"\0" * 12, plaintext, None)
    return len(wrapped).to_bytes(2, "big") + wrapped + sealed


@contextmanager
def sealed_secrets(plane: ControlPlane, workdir: Path, keys: int, targets: int) -> Iterator[Peer]:
    binary = build(SEALED_SECRETS)
    plane.install_crds(SEALED_SECRETS.crd_dir)
    ns, sa = "bench-sealed", "sealed-secrets"
    user = _service_account(plane, ns, sa)
    account = workdir / "sealed-secrets-sa"
    account.mkdir(parents=True, exist_ok=True)
    token = plane.kubectl("-n", ns, "create", "token", sa, "--duration=86400s").strip()
    (account / "token").write_text(token)
    (account / "ca.crt").write_bytes(plane.ca.cert.read_bytes())
    (account / "namespace").write_text(ns)
    port = plane.server.rsplit(":", 1)[1]
    argv = [
        str(binary),
        "--kubeclient-qps=-1",  # client-side rate limit off: its best case
        f"--listen-addr=127.0.0.1:{free_port()}",
        f"--listen-metrics-addr=127.0.0.1:{free_port()}",
        "--key-renew-period=0",
    ]
    env = {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": port,
        "POD_NAMESPACE": ns,
    }
    log = (workdir / "sealed-secrets.log").open("ab")
    process = subprocess.Popen(
        in_cluster_command(argv, account), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        label = "sealedsecrets.bitnami.com/sealed-secrets-key"
        pem = _wait(
            "the Sealed Secrets key",
            lambda: _quietly(
                plane,
                "-n",
                ns,
                "get",
                "secrets",
                "-l",
                label,
                "-o",
                "jsonpath={.items[*].data.tls\\.crt}",
            ).strip(),
        )
        public = x509.load_pem_x509_certificate(base64.b64decode(pem)).public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        names = _targets(plane, "sealed", targets)
        items = [
            (
                f"/apis/bitnami.com/v1alpha1/namespaces/{target}/sealedsecrets",
                {
                    "apiVersion": "bitnami.com/v1alpha1",
                    "kind": "SealedSecret",
                    "metadata": {"name": f"k{i}", "namespace": target},
                    "spec": {
                        "encryptedData": {
                            "api-key": base64.b64encode(
                                hybrid_encrypt(public, os.urandom(20), f"{target}/k{i}".encode())
                            ).decode()
                        },
                        "template": {"metadata": {"name": f"k{i}", "namespace": target}},
                    },
                },
            )
            for i in range(keys)
            for target in names
        ]
        yield Peer("Sealed Secrets v0.40.0 (QPS unlimited)", user, process, names, items)
    finally:
        _stop(process)


# -- External Secrets Operator ----------------------------------------------------------------


@contextmanager
def external_secrets(plane: ControlPlane, workdir: Path, keys: int, targets: int) -> Iterator[Peer]:
    binary = build(EXTERNAL_SECRETS)
    plane.install_crds(EXTERNAL_SECRETS.crd_dir)
    ns, sa = "bench-eso", "external-secrets"
    user = _service_account(plane, ns, sa)
    identity = plane.service_account(ns, sa)
    log = (workdir / "external-secrets.log").open("ab")
    process = subprocess.Popen(
        [str(binary), f"--metrics-addr=127.0.0.1:{free_port()}", "--loglevel=error"],
        env={**os.environ, "KUBECONFIG": str(identity.kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        store = {
            "apiVersion": "external-secrets.io/v1",
            "kind": "ClusterSecretStore",
            "metadata": {"name": "bench-fake"},
            "spec": {"provider": {"fake": {"data": [{"key": "api-key", "value": "v" * 20}]}}},
        }
        plane.kubectl("apply", "-f", "-", input=json.dumps(store))
        _wait(
            "the fake ClusterSecretStore to be ready",
            lambda: (
                "True"
                in _quietly(
                    plane,
                    "get",
                    "clustersecretstore",
                    "bench-fake",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                )
            ),
        )
        names = _targets(plane, "eso", targets)
        items = [
            (
                f"/apis/external-secrets.io/v1/namespaces/{target}/externalsecrets",
                {
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "metadata": {"name": f"k{i}", "namespace": target},
                    "spec": {
                        "refreshInterval": "1h",
                        "secretStoreRef": {"kind": "ClusterSecretStore", "name": "bench-fake"},
                        "target": {"name": f"k{i}"},
                        "data": [{"secretKey": "api-key", "remoteRef": {"key": "api-key"}}],
                    },
                },
            )
            for i in range(keys)
            for target in names
        ]
        yield Peer("External Secrets v0.16.2 (defaults)", user, process, names, items)
    finally:
        _stop(process)
