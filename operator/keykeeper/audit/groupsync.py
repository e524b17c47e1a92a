"""Group commit: many coroutines wait for their records to be on disk, one
``fdatasync`` serves them all.

The audit log's rule is "the record is durable before the action it announces". With
one sync per record the event loop stops for every sync (five per new key); here a
writer appends without syncing and awaits ``durable(seq)``: the first waiter starts a
sync in a thread, those arriving meanwhile are served by the next one. A failed sync
fails every waiter it was to serve, so no action goes ahead on an unsynced record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class GroupSync:
    def __init__(self, sync: Callable[[], None], written: Callable[[], int]) -> None:
        self._sync = sync  # makes everything written so far durable (blocking)
        self._written = written  # the last sequence number written
        self.synced = 0  # everything up to this is durable
        self.syncs = 0  # syncs made (for the benchmarks)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        # a thread of its own: a slow KMS filling the shared pool never delays a sync,
        # and with it every action (a withdrawal too) waiting for its record
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keykeeper-audit")

    async def durable(self, seq: int) -> None:
        """Return once record ``seq`` is on disk; raise what the sync raised."""
        if seq <= self.synced:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="keykeeper-audit-sync")
        await future

    async def _run(self) -> None:
        while self._waiters:
            target = self._written()
            try:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._sync)
            except Exception as exc:
                served = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
                for _, future in served:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.syncs += 1
            self.synced = max(self.synced, target)
            served = [w for w in self._waiters if w[0] <= target]
            self._waiters = [w for w in self._waiters if w[0] > target]
            for _, future in served:
                if not future.done():
                    future.set_result(None)
