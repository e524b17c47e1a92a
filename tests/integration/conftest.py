"""Fixtures for tests against the real control plane (see tests/controlplane)."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from kubernetes import client, config

from tests.controlplane import ControlPlane, Identity

_PLANE: ControlPlane | None = None


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    global _PLANE
    plane = ControlPlane().start()
    _PLANE = plane
    try:
        yield plane
    finally:
        _PLANE = None
        plane.stop()


def api_client(identity: Identity) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(identity.kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def admin(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    assert control_plane.admin is not None
    with api_client(control_plane.admin) as api:
        yield api


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.failed
        and _PLANE is not None
        and "control_plane" in getattr(item, "fixturenames", ())
    ):
        report.sections.append(("control plane logs", _PLANE.log_tail()))
