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


def test_namespaces_take_turns_so_a_flood_waits_for_itself() -> None:
    seen: list[tuple[str, str]] = []

    async def work(item: tuple[str, str]) -> float | None:
        seen.append(item)
        await asyncio.sleep(0)
        return None

    async def main() -> None:
        queue: WorkQueue[tuple[str, str]] = WorkQueue(work, 1)
        for n in range(100):
            queue.add(("flood", f"k{n}"))
        queue.add(("victim", "k"))
        queue.add(("other", "k"))
        task = asyncio.create_task(queue.run())
        while len(seen) < 102:
            await asyncio.sleep(0.001)
        task.cancel()

    asyncio.run(main())
    assert seen[:4] == [("flood", "k0"), ("victim", "k"), ("other", "k"), ("flood", "k1")]
    assert [item for item in seen if item[0] == "flood"] == [("flood", f"k{n}") for n in range(100)]


def test_the_enforcement_lane_has_workers_of_its_own_and_never_runs_a_key_twice_at_once() -> None:
    """Every reconcile worker is stuck (a slow KMS, a flood); enforcement still runs,
    and a key being reconciled is enforced right after, not beside it."""
    release = asyncio.Event()
    running: set[tuple[str, str]] = set()
    overlaps: list[tuple[str, str]] = []
    enforced: list[tuple[tuple[str, str], float]] = []

    async def work(item: tuple[str, str]) -> float | None:
        if item in running:
            overlaps.append(item)
        running.add(item)
        await release.wait()
        running.discard(item)
        return None

    async def enforce(item: tuple[str, str], queued_at: float) -> None:
        if item in running:
            overlaps.append(item)
        enforced.append((item, queued_at))

    async def main() -> None:
        queue: WorkQueue[tuple[str, str]] = WorkQueue(work, 2, enforce=enforce)
        task = asyncio.create_task(queue.run())
        for n in range(10):
            queue.add(("flood", f"k{n}"))
        await asyncio.sleep(0.01)  # both reconcile workers hold a flood key
        queue.enforce(("victim", "k"))
        queue.enforce(("flood", "k0"))  # being reconciled: enforced once that ends
        for _ in range(100):
            if enforced:
                break
            await asyncio.sleep(0.001)
        assert [item for item, _ in enforced] == [("victim", "k")]
        release.set()
        for _ in range(200):
            if len(enforced) == 2 and queue.depth == 0:
                break
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(main())
    assert [item for item, _ in enforced] == [("victim", "k"), ("flood", "k0")]
    assert overlaps == []
