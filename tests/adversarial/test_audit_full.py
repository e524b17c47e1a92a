"""Finding K9 — a full audit volume stopped every withdrawal.

Tenants grow the audit log (a record per target per action; many targets, many
commands): once its volume is full, every action failed on its record, withdrawals
too, so a revoked key stayed projected. The operator runs here with its audit log on
a tmpfs of its own that the test makes refuse every write (remounted read-only: a
full tmpfs still takes small appends into the file's last page, so ``ENOSPC`` comes
late and at random; ``EROFS`` takes the same path, an ``OSError`` on write). The
revocation must still withdraw, and the log name the withdrawals in an AuditGap
record once it takes writes again. Meanwhile the keys say why they are not
reconciled (``Ready=False AuditUnavailable``, not a status that still reads Ready) and
nothing new is exposed: a key created then is projected only once its records can be
written.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def audit_on_a_small_volume(operator: Operator, tmp_path: Path) -> Iterator[Path]:
    """The operator restarted with its audit log on a 1 MiB tmpfs; put back after."""
    volume = tmp_path / "audit-volume"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(volume)], check=True)
    usual = operator.audit_log
    operator.stop()
    operator.audit_log = volume / "audit.jsonl"
    try:
        operator.start()
        yield volume
    finally:
        operator.stop()
        operator.audit_log = usual
        subprocess.run(["umount", str(volume)], check=False)
        operator.start()


def remount(volume: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(volume)], check=True)


def test_a_full_audit_volume_does_not_keep_a_revoked_key_projected(
    operator: Operator, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    home, policy = kk.namespace("home"), unique("pol")
    targets = [kk.namespace("to") for _ in range(3)]
    kk.create(keypolicy(policy, sources={"names": [home]}, targets={"names": targets}))
    with audit_on_a_small_volume(operator, tmp_path) as volume:
        kk.create(apikey(home, "k", policy, projections=[{"namespace": ns} for ns in targets]))
        for ns in targets:
            leaks.add(wait_for(lambda ns=ns: kk.value(ns, "k"), what=f"projected into {ns}"))  # type: ignore[misc]
        remount(volume, "ro")  # from now on no record can be written
        kk.patch_key(home, "k", {"spec": {"revoked": True}})
        for ns in targets:  # withdrawn although not one record can be written
            wait_for(lambda ns=ns: kk.secret(ns, "k") is None, what=f"withdrawn from {ns}")  # type: ignore[misc]
        wait_for(
            lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "AuditUnavailable",
            what="the revoked key to say its audit log cannot be written",
        )
        kk.create(apikey(home, "new", policy, projections=[{"namespace": targets[0]}]))
        wait_for(
            lambda: condition(kk.key(home, "new"), "Ready").get("reason") == "AuditUnavailable",
            what="a key created meanwhile to say why it is not projected",
        )
        assert kk.secret(targets[0], "new") is None, "projected without its audit record"
        remount(volume, "rw")  # the next record names what was done without one
        leaks.add(wait_for(lambda: kk.value(targets[0], "new"), what="projected once recorded"))
        kk.create(apikey(home, "after", policy, projections=[]))
        records = wait_for(
            lambda: [
                r for r in map(json.loads, operator.audit_log.read_text().splitlines())
                if r["action"] == "AuditGap" and "ProjectionWithdrawn" in r["detail"]
            ],
            timeout=60,
            what="an AuditGap record naming the withdrawals",
        )  # fmt: skip
        assert all(f"{ns}/k" in records[0]["detail"] for ns in targets), records
        assert "taken without its record" in operator.log_text()
