"""Fixtures for tests against the real control plane (see devtools/controlplane), shared by
tests/integration and tests/adversarial through the root conftest: one control plane
and one operator process per session."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import api_client
from kubernetes import client

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
    if report.failed and _OPERATOR is not None:
        report.sections.append(("operator log", _OPERATOR.log_tail(60)))


# -- the operator under test ------------------------------------------------------------------

from devtools.argo import install_rollout_crd  # noqa: E402
from devtools.kk import Cluster  # noqa: E402
from devtools.operator import Operator, running_operator  # noqa: E402

_OPERATOR: Operator | None = None


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, softhsm_token: object
) -> Iterator[Operator]:
    """The operator process; it inherits SOFTHSM2_CONF, so policies can use the test token."""
    global _OPERATOR
    # sealing keys checked every 2 s, so `keykeeper cert --rotate` is seen at once; Argo
    # Rollouts' CRD installed and their restarts on (deploy/argo-rollouts.yaml)
    env = {"KEYKEEPER_SEALING_CHECK": "2", "KEYKEEPER_ARGO_ROLLOUTS": "true"}
    install_rollout_crd(control_plane)
    workdir = tmp_path_factory.mktemp("operator")
    with running_operator(control_plane, workdir, env, ("argo-rollouts.yaml",)) as running:
        _OPERATOR = running
        try:
            yield running
        finally:
            _OPERATOR = None


@pytest.fixture(scope="session")
def kk(admin: client.ApiClient) -> Cluster:
    return Cluster(admin)


class Leaks:
    """Plaintext values a test used; none may appear in logs, Events, statuses or audit."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def add(self, value: bytes | None) -> None:
        assert value, "a test registered an empty value"
        self.values.append(value)


@pytest.fixture
def leaks(operator: Operator, kk: Cluster) -> Iterator[Leaks]:
    found = Leaks()
    yield found
    import base64
    import json

    haystacks = {
        "operator log": operator.log_text(),
        "events": kk.all_events_text(),
        "apikey statuses": json.dumps([k.get("status") for k in kk.apikeys()]),
        "audit log": operator.audit_log.read_text() if operator.audit_log.exists() else "",
    }
    for value in found.values:
        needles = {value.decode(errors="replace"), base64.b64encode(value).decode()}
        for where, text in haystacks.items():
            for needle in needles:
                assert needle not in text, f"a key value leaked into the {where}"
