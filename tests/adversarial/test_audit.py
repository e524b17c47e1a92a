"""Finding 7 — an audit log whose newest records could vanish unnoticed.

Dropping the newest records or emptying the file used to verify OK. The head is now
anchored in the cluster (regularly and at shutdown); ``keykeeper audit verify`` checks
the log against it, and a restarted operator records the gap it finds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import REPO, Operator, wait_for

pytestmark = pytest.mark.cluster


def audit_verify(plane: ControlPlane, operator: Operator, *extra: str) -> tuple[int, str]:
    assert plane.admin is not None
    done = subprocess.run(
        [sys.executable, "-m", "keykeeper", "audit", "verify", str(operator.audit_log), *extra],
        env={**os.environ, "KUBECONFIG": str(plane.admin.kubeconfig)},
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_dropped_newest_records_are_caught_and_recorded(
    control_plane: ControlPlane, operator: Operator, kk: Cluster
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    for n in range(3):
        kk.create(apikey(home, f"k{n}", policy, projections=[{"namespace": home}]))
    wait_for(lambda: all(kk.secret(home, f"k{n}") for n in range(3)), what="projected")
    operator.stop()  # graceful: the head is anchored on the way out
    code, out = audit_verify(control_plane, operator)
    assert code == 0, out
    records = operator.audit_log.read_text().splitlines()
    kept, dropped = records[:-3], records[-3:]
    operator.audit_log.write_text("\n".join(kept) + "\n")
    code, out = audit_verify(control_plane, operator)
    assert code == 1
    assert "3 newest records are missing" in out
    code, out = audit_verify(control_plane, operator, "--no-anchor")
    assert code == 0, "the chain alone cannot see it: that is why the anchor exists"
    operator.start()
    gap = wait_for(
        lambda: next(
            (r for r in operator.audit_records() if r["action"] == "AuditGap"),
            None,
        ),
        what="the restarted operator records the gap",
    )
    assert "missing" in gap["detail"]
    assert json.loads(kept[-1])["mac"] == gap["prev"]
    del dropped
