"""The audit anchor across a restart: an unchanged head is not written again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keykeeper.anchor import Anchorer
from keykeeper.audit import AuditLog
from tests.unit.fakekube import FakeKube

KEY = b"a" * 32
NS = "keykeeper-system"


def test_a_restart_with_an_anchored_head_writes_nothing(tmp_path: Path) -> None:
    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    audit.append("Created", name="k")

    async def before_and_after() -> None:
        first = Anchorer(kube, NS, audit, KEY)
        await first.check_at_start()
        await first.anchor()
        assert kube.writes(), "the first anchor is written"
        kube.requests.clear()
        again = Anchorer(kube, NS, AuditLog(audit.path, KEY, fsync=False), KEY)  # a restart
        await again.check_at_start()
        await again.anchor()
        assert kube.writes() == [], "the same head is not anchored twice"
        audit.append("Projected", name="k")
        moved = Anchorer(kube, NS, AuditLog(audit.path, KEY, fsync=False), KEY)
        await moved.check_at_start()
        await moved.anchor()
        assert kube.writes(), "a head that moved is anchored"

    asyncio.run(before_and_after())
