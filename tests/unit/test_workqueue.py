"""The keyed work queue: one worker per key at a time, nothing lost, and the start-up
sweep yielding to every change that comes in."""

from __future__ import annotations

import asyncio

from keykeeper.runtime.workqueue import WorkQueue


def test_changes_go_before_the_sweep_and_a_swept_key_moves_up() -> None:
    seen: list[str] = []

    async def work(item: str) -> float | None:
        seen.append(item)
        await asyncio.sleep(0)
        return None

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(work, 1)
        for n in range(5):
            queue.sweep(f"old-{n}")
        queue.add("changed")
        queue.add("old-3")  # a swept key that changed: worked now, once
        queue.sweep("changed")  # already waiting: no second run
        assert queue.depth == 6
        task = asyncio.create_task(queue.run())
        for _ in range(200):
            if queue.depth == 0 and len(seen) == 6:
                break
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(main())
    assert seen == ["changed", "old-3", "old-0", "old-1", "old-2", "old-4"]


def test_a_key_added_while_worked_on_runs_once_more_never_twice_at_once() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []

    async def work(item: str) -> float | None:
        if item in running:
            overlaps.append(item)
        running.add(item)
        runs.append(item)
        await asyncio.sleep(0.02)
        running.discard(item)
        return None

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(work, 4)
        task = asyncio.create_task(queue.run())
        queue.add("k")
        await asyncio.sleep(0.005)  # k is being worked on
        queue.add("k")
        queue.add("k")
        queue.sweep("k")
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(main())
    assert overlaps == []
    assert runs == ["k", "k"]
