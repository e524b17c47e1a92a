"""The day-2 commands as a user types them: ``kubectl keykeeper status|plan|rotate|
suspend|reinstate|revoke`` through the kubectl the control plane builds, keykeeper's
plugin on PATH, and the admin's kubeconfig (RBAC is the user's own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks
from tests.integration.test_seal_cli import kubectl

pytestmark = pytest.mark.cluster


def phase(kk: Cluster, ns: str, name: str) -> str:
    return str(((kk.key(ns, name) or {}).get("status") or {}).get("phase", ""))


def test_status_plan_and_the_lifecycle_commands(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]

    def kk_cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        done = kubectl(control_plane, admin, "keykeeper", *args, stdin=stdin)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    home, allowed, denied = kk.namespace("home"), kk.namespace("ok"), kk.namespace("no")
    policy = unique("day2")
    kk.create(keypolicy(policy, targets={"names": [home, allowed]}))
    targets = [{"namespace": allowed}, {"namespace": denied}]
    kk.create(apikey(home, "k", policy, projections=targets))
    leaks.add(wait_for(lambda: kk.value(allowed, "k"), what="projected"))

    code, out, err = kk_cli("status", "-n", home)
    assert code == 0, err
    header, row = out.splitlines()[0], next(x for x in out.splitlines() if " k " in f" {x} ")
    assert header.split()[:3] == ["NAMESPACE", "NAME", "PHASE"]
    assert row.split()[:4] == [home, "k", "Active", "1"]
    assert header.split()[6] == "EXPIRES" and row.split()[4:6] == ["-", "-"]  # no period, no expiry
    code, out, _ = kk_cli("status", "-A", "-o", "json")
    assert code == 0 and any(i["metadata"]["namespace"] == home for i in json.loads(out)["items"])
    code, out, _ = kk_cli("status", "k", "-n", home)
    assert code == 0 and "Ready=True" in out and "Recent Events:" in out and "Projected" in out

    code, out, _ = kk_cli("plan", "k", "-n", home)
    assert code == 0
    verdicts = {line.split()[0]: line.split()[2] for line in out.splitlines()[1:]}
    assert verdicts == {allowed: "allowed", denied: "denied"}
    manifest = tmp_path / "new.yaml"  # a manifest not applied yet: planned, nothing written
    manifest.write_text(
        json.dumps(apikey(home, "draft", policy, projections=[{"namespace": home}]))
    )
    code, out, _ = kk_cli("plan", "-f", str(manifest))
    assert code == 0 and "allowed" in out and kk.key(home, "draft") is None
    # where keykeeper runs is never a source, whatever that namespace is called (K19)
    code, out, _ = kk_cli("plan", "-f", str(manifest), "--operator-namespace", home)
    assert code == 0 and "does not admit keys from namespace" in out

    assert kk_cli("rotate", "k", "-n", home)[0] == 0
    wait_for(lambda: ((kk.key(home, "k") or {}).get("status") or {}).get("currentVersion") == 2,
             what="rotated")  # fmt: skip
    assert kk_cli("suspend", "k", "-n", home)[0] == 0
    wait_for(lambda: phase(kk, home, "k") == "Suspended", what="suspended")
    assert kk.secret(allowed, "k") is None
    assert kk_cli("reinstate", "k", "-n", home)[0] == 0
    wait_for(lambda: kk.secret(allowed, "k") is not None, what="reinstated")

    code, _, err = kk_cli("revoke", "k", "-n", home, stdin=b"no\n")
    assert code == 1 and "not revoked" in err and phase(kk, home, "k") != "Revoked"
    assert kk_cli("revoke", "k", "-n", home, "--yes")[0] == 0
    wait_for(lambda: phase(kk, home, "k") == "Revoked", what="revoked")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "missing", "-n", "default"], "not found"),
        (["rotate", "missing", "-n", "default"], "not found"),
        (["plan", "-f", "/nonexistent.yaml"], "not an ApiKey manifest"),
        (["suspend"], "needs the ApiKey's name"),
    ],
)
def test_errors_are_one_line_with_exit_1(
    control_plane: ControlPlane, operator: Operator, args: list[str], message: str
) -> None:
    done = kubectl(control_plane, control_plane.admin.kubeconfig, "keykeeper", *args)  # type: ignore[union-attr]
    assert done.returncode == 1 and done.stdout == b""
    assert message in done.stderr.decode() and done.stderr.count(b"\n") == 1


def test_a_user_without_rights_is_told_forbidden(
    control_plane: ControlPlane, operator: Operator
) -> None:
    nobody = control_plane.user(unique("nobody")).kubeconfig
    done = kubectl(control_plane, nobody, "keykeeper", "status", "-A")
    assert done.returncode == 1 and b"forbidden" in done.stderr
