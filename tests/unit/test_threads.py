"""A provider's own bounded threads (K8): a slow provider holds only these, and a call
beyond the bound is refused at once instead of waiting for a thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from keykeeper.errors import ProviderUnavailable
from keykeeper.providers.threads import BoundedExecutor, offload


def test_calls_beyond_threads_and_queue_are_refused_at_once_and_freed_when_done() -> None:
    gate = threading.Event()
    pool = BoundedExecutor("slow", threads=2, queued=1)
    try:
        held = [pool.submit(gate.wait, 5) for _ in range(3)]
        assert pool.pending == 3
        with pytest.raises(ProviderUnavailable, match="busy"):
            pool.submit(gate.wait, 5)
        gate.set()
        for future in held:
            future.result(timeout=5)
        assert pool.pending == 0
        assert pool.submit(lambda: 7).result(timeout=5) == 7
    finally:
        gate.set()
        pool.shutdown()


def test_a_slow_pool_does_not_hold_another() -> None:
    gate = threading.Event()
    slow, other = BoundedExecutor("slow", threads=1, queued=0), BoundedExecutor("other")

    async def scenario() -> int:
        stuck = asyncio.ensure_future(offload(slow, gate.wait, 5))
        answer = await asyncio.wait_for(offload(other, lambda: 42), timeout=2)
        gate.set()
        await stuck
        return answer

    try:
        assert asyncio.run(scenario()) == 42
    finally:
        gate.set()
        slow.shutdown()
        other.shutdown()


def test_in_process_work_runs_inline() -> None:
    async def scenario() -> str:
        return await offload(None, lambda: threading.current_thread().name)

    assert asyncio.run(scenario()) == threading.main_thread().name
