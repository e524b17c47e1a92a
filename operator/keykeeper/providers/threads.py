"""Where a provider's blocking calls run: threads of its own, never the shared pool.

A remote provider (KMS, HSM) answers in milliseconds or in seconds. Run on the event
loop's default pool, a slow one would take every thread, and with them the audit log's
sync and every other policy's provider: one team's slow KMS would delay another team's
revocation. So each guarded provider instance has a :class:`BoundedExecutor`: ``threads``
threads, and at most ``queued`` more calls waiting for one; a call beyond that is
refused at once as ``ProviderUnavailable`` ("busy"), so the reconcile backs off and its
worker is free for keys under other providers. The in-process local provider runs
inline (``offload`` calls it directly).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from keykeeper.errors import ProviderUnavailable

T = TypeVar("T")

THREADS = 4  # calls in flight to one provider instance
QUEUED = 4  # calls waiting for one of its threads; more are refused at once


class BoundedExecutor(ThreadPoolExecutor):
    def __init__(self, name: str, threads: int = THREADS, queued: int = QUEUED) -> None:
        super().__init__(max_workers=threads, thread_name_prefix=f"keykeeper-{name}")
        self.name, self.limit = name, threads + queued
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._pending >= self.limit:
                raise ProviderUnavailable(
                    f"the {self.name} provider is busy ({self.limit} calls in flight or "
                    "waiting); retrying later"
                )
            self._pending += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1


async def offload(executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on ``executor``'s threads (None: inline, for in-process work)."""
    if executor is None:
        return fn(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args))
