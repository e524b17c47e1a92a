"""The operator as a process: its liveness endpoint, its JSON logs, its audit log."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


def test_liveness_endpoint_answers(operator: Operator) -> None:
    def healthy() -> bool:
        with urllib.request.urlopen(operator.liveness, timeout=5) as answer:
            return bool(answer.status == 200)

    assert wait_for(healthy, what="liveness 200")


def test_logs_are_structured_json(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="projected"))
    wait_for(
        lambda: any(
            f"{home}/k: " in line and "Projected: " in line
            for line in operator.log_text().splitlines()
        ),
        what="the reconcile logged",
    )
    lines = [line for line in operator.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all("message" in r and "severity" in r for r in records)


def test_audit_verify_reads_the_key_from_the_cluster(
    control_plane: ControlPlane, operator: Operator, tmp_path: Path
) -> None:
    assert control_plane.admin is not None
    wait_for(lambda: operator.audit_records(), what="some audit records")
    env = {"KUBECONFIG": str(control_plane.admin.kubeconfig), "PATH": "/usr/bin:/bin"}
    # the anchor is read before the log is copied: an operator busy with other tests'
    # keys anchors every 10 s, and a copy taken before a newer anchor is (rightly) short
    anchor = tmp_path / "anchor.json"

    def anchored() -> str | None:
        found = control_plane.kubectl(
            "-n", "keykeeper-system", "get", "secret", "keykeeper-audit-anchor", "-o", "json",
            check=False,
        )  # fmt: skip
        return found if found.startswith("{") else None

    anchor.write_text(wait_for(anchored, what="the audit anchor"))
    cli = [sys.executable, "-m", "keykeeper.cli", "audit", "verify", "--anchor-file", str(anchor)]
    intact = tmp_path / "intact.jsonl"
    lines = operator.audit_log.read_text().splitlines()
    intact.write_text("\n".join(lines) + "\n")
    done = subprocess.run([*cli, str(intact)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {len(lines)} records")
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # the second record removed
    done = subprocess.run(
        [*cli, str(tampered)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "BROKEN at line 2" in done.stdout
