from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devtools import kmspeers
from devtools.fakes import azurekv, gcpkms, tls
from devtools.softhsm import Token, init_token


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    return init_token(Path(tmp_path_factory.mktemp("softhsm")))


@pytest.fixture(scope="session")
def moto_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kmspeers.Peer]:
    peer = kmspeers.moto(Path(tmp_path_factory.mktemp("moto"))).start()
    yield peer
    peer.kill()


@pytest.fixture(scope="session")
def local_kms_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kmspeers.Peer]:
    peer = kmspeers.local_kms(Path(tmp_path_factory.mktemp("local-kms"))).start()
    yield peer
    peer.kill()


@dataclass(frozen=True)
class CloudFakes:
    """The in-repo Google Cloud KMS (gRPC) and Azure Key Vault (HTTPS) fakes, over TLS
    with a throwaway CA the clients trust through their standard variables."""

    cert: tls.ServerCert
    gcp: gcpkms.FakeCloudKms
    gcp_account: dict[str, str]
    azure: azurekv.FakeKeyVault
    azure_credentials: dict[str, str]

    @property
    def env(self) -> dict[str, str]:
        return {
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(self.cert.ca_file),
            "REQUESTS_CA_BUNDLE": str(self.cert.ca_file),
        }


@pytest.fixture(scope="session")
def cloud_fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudFakes]:
    cert = tls.make(Path(tmp_path_factory.mktemp("tls")))
    account, public = gcpkms.service_account()
    gcp = gcpkms.FakeCloudKms(cert).start()
    gcp.add_principal(account["client_email"], public)
    azure = azurekv.FakeKeyVault(cert).start()
    azure.add_client("keykeeper-app", "app-secret-for-tests")
    fakes = CloudFakes(
        cert,
        gcp,
        account,
        azure,
        {
            "tenant-id": azurekv.TENANT,
            "client-id": "keykeeper-app",
            "client-secret": "app-secret-for-tests",
        },
    )
    os.environ.update(fakes.env)  # this process's clients, as the operator's get them
    yield fakes
    gcp.stop()
    azure.stop()


# The real control plane and the operator under test, one of each per session, for
# tests/integration and tests/adversarial alike.
from tests.cluster import (  # noqa: E402
    admin,
    control_plane,
    kk,
    leaks,
    operator,
    pytest_runtest_makereport,
)

__all__ = [
    "admin",
    "control_plane",
    "kk",
    "leaks",
    "operator",
    "pytest_runtest_makereport",
    "softhsm_token",
]
