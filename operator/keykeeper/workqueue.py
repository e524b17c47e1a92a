"""A keyed work queue: each ApiKey is reconciled by at most one worker at a time.

Adding a key that is already waiting is a no-op; adding one that is being worked on
marks it to run once more afterwards, so no change is lost and none is handled
twice at once. A reconcile that raises is retried with exponential backoff; one that
returns a delay is looked at again after it (the lifecycle's ``recheck_after``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from keykeeper.errors import KeykeeperError

log = logging.getLogger("keykeeper.queue")
K = TypeVar("K", bound=Hashable)

MIN_BACKOFF = 0.5
MAX_BACKOFF = 300.0


class WorkQueue(Generic[K]):
    def __init__(self, work: Callable[[K], Awaitable[float | None]], concurrency: int = 4) -> None:
        self._work = work
        self._concurrency = concurrency
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}

    def add(self, item: K, delay: float = 0.0) -> None:
        if delay > 0:
            loop = asyncio.get_running_loop()
            old = self._timers.get(item)
            when = loop.time() + delay
            if old is not None and old.when() <= when:
                return  # an earlier timer already covers this
            if old is not None:
                old.cancel()
            self._timers[item] = loop.call_at(when, self._fire, item)
            return
        if item in self._active:
            self._dirty.add(item)
        elif item not in self._waiting:
            self._waiting.add(item)
            self._queue.put_nowait(item)

    def _fire(self, item: K) -> None:
        self._timers.pop(item, None)
        self.add(item)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self._concurrency)))

    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            self._waiting.discard(item)
            self._active.add(item)
            try:
                delay = await self._work(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one key's failure never stops the others
                failures = self._failures.get(item, 0) + 1
                self._failures[item] = failures
                backoff = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** min(failures, 12))
                level = (
                    logging.INFO
                    if isinstance(exc, KeykeeperError) and exc.transient
                    else logging.WARNING
                )
                log.log(
                    level,
                    "reconcile of %s failed (%s: %s); retrying in %.1fs",
                    item,
                    type(exc).__name__,
                    exc,
                    backoff,
                    exc_info=not isinstance(exc, KeykeeperError),
                )
                delay = backoff
            else:
                self._failures.pop(item, None)
            finally:
                self._active.discard(item)
            if item in self._dirty:
                self._dirty.discard(item)
                self.add(item)
            elif delay is not None:
                self.add(item, delay)
