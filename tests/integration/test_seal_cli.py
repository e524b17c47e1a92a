"""``kubectl keykeeper cert`` and ``kubectl keykeeper seal`` as a user types them: the
kubectl the control plane builds, keykeeper's plugin on PATH, an ordinary user's
kubeconfig. Sealed with the CLI, applied with kubectl, projected: the same value."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


def kubectl(
    plane: ControlPlane, kubeconfig: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    assert plane.bin is not None
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{plane.bin}:/usr/bin:/bin"}
    return subprocess.run(
        [str(plane.bin / "kubectl"), *args, f"--kubeconfig={kubeconfig}"],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_seal_with_the_kubectl_plugin_apply_and_get_the_same_value(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    user = control_plane.user(unique("gitops")).kubeconfig
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    home = kk.namespace("home")
    policy = unique("gitops")
    kk.create(keypolicy(policy, targets={"names": [home]}))
    cert = wait_for(
        lambda: (
            (done := kubectl(control_plane, user, "keykeeper", "cert")).returncode == 0 and done
        ),
        what="the sealing key, as a plain user",
    )
    pem = tmp_path / "pub.pem"
    pem.write_bytes(cert.stdout)
    fingerprint = cert.stderr.decode().split("fingerprint: ")[1].strip()
    assert fingerprint.startswith("sha256:")

    value = b"sk_live_gitops_" + os.urandom(12).hex().encode()
    leaks.add(value)
    sealed = kubectl(
        control_plane,
        user,
        "keykeeper", "seal", "-n", home, "--name", "stripe", "--policy", policy,
        "--project", home, "--cert", str(pem), "--expect-fingerprint", fingerprint,
        stdin=value + b"\n",
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    assert value not in sealed.stdout + sealed.stderr
    manifest = tmp_path / "stripe.yaml"  # as it would sit in git
    manifest.write_bytes(sealed.stdout)
    applied = kubectl(control_plane, admin, "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert wait_for(lambda: kk.value(home, "stripe"), what="projected") == value

    # the same sealed value under another name is refused with a clear condition
    moved = manifest.read_text().replace("name: stripe", "name: stolen")
    (tmp_path / "stolen.yaml").write_text(moved)
    assert (
        kubectl(control_plane, admin, "apply", "-f", str(tmp_path / "stolen.yaml")).returncode == 0
    )
    ready = wait_for(
        lambda: (
            (c := condition(kk.key(home, "stolen"), "Ready")).get("reason") == "InvalidValue" and c
        ),
        what="refused: sealed for another name",
    )
    assert "another namespace or name" in ready["message"]
    assert kk.secret(home, "stolen") is None


def test_cli_errors_are_one_line_with_a_non_zero_exit(
    control_plane: ControlPlane, operator: Operator, tmp_path: Path
) -> None:
    user = control_plane.user(unique("gitops")).kubeconfig
    wrong = kubectl(
        control_plane, user, "keykeeper", "cert", "--expect-fingerprint", "sha256:" + "0" * 64
    )
    assert wrong.returncode == 1
    assert wrong.stdout == b"" and wrong.stderr.count(b"\n") == 1
    assert b"not the expected" in wrong.stderr
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    down = kubectl(control_plane, nowhere, "keykeeper", "cert")
    assert down.returncode == 1 and b"cannot reach the cluster" in down.stderr


def test_values_sealed_before_two_renewals_still_open(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    home = kk.namespace("home")
    policy = unique("renewal")
    kk.create(keypolicy(policy, targets={"names": [home]}))
    value = b"sk_live_before_renewal_" + os.urandom(8).hex().encode()
    leaks.add(value)
    sealed = kubectl(
        control_plane, admin, "keykeeper", "seal", "-n", home, "--name", "old",
        "--policy", policy, "--project", home, stdin=value,
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    fingerprints = []
    for _ in range(2):
        renewed = kubectl(control_plane, admin, "keykeeper", "cert", "--rotate")
        assert renewed.returncode == 0, renewed.stderr
        fingerprints.append(renewed.stderr.decode().split("fingerprint: ")[1].strip())
    assert len(set(fingerprints)) == 2
    current = kubectl(control_plane, admin, "keykeeper", "cert")
    assert current.stderr.decode().split("fingerprint: ")[1].strip() == fingerprints[-1]
    advertised = kubectl(
        control_plane, admin, "-n", "keykeeper-system", "get", "configmap",
        "keykeeper-sealing-public", "-o", "jsonpath={.data.validFingerprints}",
    ).stdout.decode().split()  # fmt: skip
    assert set(fingerprints) <= set(advertised) and len(advertised) >= 3
    manifest = tmp_path / "old.yaml"
    manifest.write_bytes(sealed.stdout)
    assert kubectl(control_plane, admin, "apply", "-f", str(manifest)).returncode == 0
    assert wait_for(lambda: kk.value(home, "old"), what="opened after renewals") == value


def test_a_cutoff_refuses_values_sealed_to_a_key_retired_before_it(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, tmp_path: Path
) -> None:
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    home = kk.namespace("home")
    policy = unique("cutoff")
    kk.create(keypolicy(policy, targets={"names": [home]}))
    sealed = kubectl(
        control_plane, admin, "keykeeper", "seal", "-n", home, "--name", "late",
        "--policy", policy, stdin=b"sk_live_too_late",
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    assert kubectl(control_plane, admin, "keykeeper", "cert", "--rotate").returncode == 0
    operator.stop()
    operator.env["KEYKEEPER_SEALING_CUTOFF"] = "2s"  # the retired key is past it at once
    try:
        operator.start()
        time.sleep(2.5)
        manifest = tmp_path / "late.yaml"
        manifest.write_bytes(sealed.stdout)
        assert kubectl(control_plane, admin, "apply", "-f", str(manifest)).returncode == 0
        ready = wait_for(
            lambda: (
                (c := condition(kk.key(home, "late"), "Ready")).get("reason") == "InvalidValue"
                and c
            ),
            what="refused: sealed to a key past the cutoff",
        )
        assert "past the cutoff" in ready["message"] and "re-seal" in ready["message"]
    finally:
        operator.stop()
        operator.env.pop("KEYKEEPER_SEALING_CUTOFF")
        operator.start()


def test_audit_verify_through_the_plugin(
    control_plane: ControlPlane, operator: Operator, kk: Cluster
) -> None:
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    home = kk.namespace("home")
    policy = unique("audited")
    kk.create(keypolicy(policy, targets={"names": [home]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    wait_for(lambda: kk.secret(home, "k") is not None, what="an action to audit")
    missing = kubectl(control_plane, admin, "keykeeper", "audit", "verify", "/nonexistent.jsonl")
    assert missing.returncode == 1 and missing.stderr.strip().count(b"\n") <= 1
    done = kubectl(control_plane, admin, "keykeeper", "audit", "verify", str(operator.audit_log))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"OK: ")
