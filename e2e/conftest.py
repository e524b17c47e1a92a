"""The e2e suite's cluster: the real control plane serving a real node (the upstream
kubelet, kube-proxy and scheduler on containerd and runc; devtools.node), a
kube-controller-manager, keykeeper's image built from the Dockerfile by buildah and
imported into the node, and helm (from its Go module). One cluster for the session;
the tests in test_install.py run in order against one release."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devtools import image, kmspeers
from devtools.controlplane import ControlPlane
from devtools.e2e import (
    NAMESPACE,
    Helm,
    restricted_namespace,
    start_controller_manager,
    tools,
)
from devtools.e2e.pods import Pods
from devtools.fakes import azurekv, gcpkms, tls
from devtools.kk import Cluster, api_client
from devtools.node import Node


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM (a CI timeout) still stops the node and the plane


signal.signal(signal.SIGTERM, _interrupted)


@pytest.fixture(scope="session")
def e2e_tools() -> Path:
    return tools()


@pytest.fixture(scope="session")
def built() -> image.Image:
    """The image, built by buildah from the Dockerfile (its layers cached by inputs)."""
    return image.build()


@pytest.fixture(scope="session")
def plane(e2e_tools: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(crds=None, serve_nodes=True).start()  # the chart installs the CRDs
    try:
        start_controller_manager(cp, e2e_tools)
        restricted_namespace(cp)
        yield cp
    finally:
        if os.environ.get("KEYKEEPER_KEEP_CLUSTER"):
            print(f"cluster kept: {cp.workdir}")
        cp.stop()


@pytest.fixture(scope="session")
def node(plane: ControlPlane, built: image.Image) -> Iterator[Node]:
    started = Node(plane, plane.workdir / "node")
    try:
        yield started.start(images=(built.archive,))
    finally:
        started.stop()


@pytest.fixture(scope="session")
def agent(plane: ControlPlane, node: Node) -> Pods:
    return Pods(plane, node, NAMESPACE)


@pytest.fixture(scope="session")
def helm(e2e_tools: Path, plane: ControlPlane) -> Helm:
    return Helm(e2e_tools / "helm", plane)


@pytest.fixture(scope="session")
def kk(plane: ControlPlane) -> Cluster:
    assert plane.admin is not None
    return Cluster(api_client(plane.admin))


@dataclass(frozen=True)
class Clouds:
    """Every cloud provider's peer, listening on the host's address (where the node's
    Pods reach it): moto's server for AWS KMS (HTTP), the in-repo Google Cloud KMS
    (gRPC) and Azure Key Vault (HTTPS) fakes under a throwaway CA."""

    moto: kmspeers.Peer
    cert: tls.ServerCert
    gcp: gcpkms.FakeCloudKms
    gcp_account: dict[str, str]
    azure: azurekv.FakeKeyVault
    azure_credentials: dict[str, str]


@pytest.fixture(scope="session")
def clouds(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clouds]:
    host = plane.address
    moto = kmspeers.moto(tmp_path_factory.mktemp("moto"), host=host).start()
    cert = tls.make(tmp_path_factory.mktemp("tls"), addresses=(host,))
    account, public = gcpkms.service_account()
    gcp = gcpkms.FakeCloudKms(cert, host=host).start()
    gcp.add_principal(account["client_email"], public)
    azure = azurekv.FakeKeyVault(cert, host=host).start()
    azure.add_client("keykeeper-app", "app-secret-for-tests")
    credentials = {
        "tenant-id": azurekv.TENANT,
        "client-id": "keykeeper-app",
        "client-secret": "app-secret-for-tests",
    }
    try:
        yield Clouds(moto, cert, gcp, account, azure, credentials)
    finally:
        moto.kill()
        gcp.stop()
        azure.stop()
