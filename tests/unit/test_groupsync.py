"""Group commit of the audit log: one fdatasync serves every record waiting for it,
and a failed sync fails every action that waited on it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from keykeeper.audit.chain import verify
from keykeeper.audit.groupsync import GroupSync
from keykeeper.audit.log import AuditLog
from keykeeper.errors import AuditWriteError

KEY = b"k" * 32


def test_concurrent_records_share_syncs_and_are_all_durable(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", KEY)

    async def one(i: int) -> int:
        record = audit.append("Projected", name=f"k{i}", sync=False)
        await audit.durable.durable(int(record["seq"]))
        assert audit.durable.synced >= record["seq"]
        return int(record["seq"])

    async def many() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(50)))

    seqs = asyncio.run(many())
    assert sorted(seqs) == list(range(1, 51))
    assert 1 <= audit.durable.syncs < 50, "waiters arriving together share a sync"
    assert verify(audit.path.read_text().splitlines(), KEY).ok


def test_a_failed_sync_fails_every_waiter_it_was_to_serve() -> None:
    written = [0]
    gate = threading.Event()

    def sync() -> None:
        gate.wait(5)
        raise AuditWriteError("audit log: disk gone")

    group = GroupSync(sync, lambda: written[0])

    async def scenario() -> list[BaseException | None]:
        written[0] = 3
        waits = [asyncio.create_task(group.durable(seq)) for seq in (1, 2, 3)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*waits, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, AuditWriteError) for r in results)
    assert group.synced == 0


def test_a_record_written_during_a_sync_waits_for_the_next_one() -> None:
    written = [1]
    synced_upto: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def sync() -> None:
        synced_upto.append(written[0])
        started.set()
        release.wait(5)

    group = GroupSync(sync, lambda: written[0])

    async def scenario() -> None:
        first = asyncio.create_task(group.durable(1))
        await asyncio.to_thread(started.wait, 5)
        written[0] = 2  # appended after the sync started: not covered by it
        second = asyncio.create_task(group.durable(2))
        release.set()
        await first
        assert group.synced == 1 and not second.done()
        await second
        assert group.synced == 2

    asyncio.run(scenario())
    assert synced_upto == [1, 2]
