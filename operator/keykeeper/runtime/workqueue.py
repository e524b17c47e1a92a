"""A keyed work queue: each ApiKey is reconciled by at most one worker at a time.

Adding a key that is already waiting is a no-op; adding one that is being worked on
marks it to run once more afterwards, so no change is lost and none is handled
twice at once. A reconcile that raises is retried with exponential backoff; one that
returns a delay is looked at again after it (the lifecycle's ``recheck_after``).

A second, lower lane (``sweep``) holds the start-up pass over every known key: it is
worked only when nothing else waits, so a change made while 100,000 keys are being
looked at after a restart is reconciled at once. A key waiting in the sweep that is
added normally moves up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
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
        self._queue: deque[K] = deque()
        self._sweep: deque[K] = deque()
        self._swept: set[K] = set()  # waiting in the sweep lane
        self._ready = asyncio.Event()
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
            self._swept.discard(item)  # up from the sweep lane, if it was there
            self._waiting.add(item)
            self._queue.append(item)
            self._ready.set()

    def sweep(self, item: K) -> None:
        """Queue ``item`` in the lower lane (unless it is waiting or being worked on)."""
        if item in self._active or item in self._waiting or item in self._swept:
            return
        self._swept.add(item)
        self._sweep.append(item)
        self._ready.set()

    @property
    def depth(self) -> int:
        """Keys waiting, in both lanes."""
        return len(self._waiting) + len(self._swept)

    async def _next(self) -> K:
        while True:
            if self._queue:
                item = self._queue.popleft()
                self._waiting.discard(item)
                return item
            while self._sweep:
                item = self._sweep.popleft()
                if item in self._swept:  # else it moved up, or was worked on already
                    self._swept.discard(item)
                    return item
            self._ready.clear()
            await self._ready.wait()

    def _fire(self, item: K) -> None:
        self._timers.pop(item, None)
        self.add(item)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self._concurrency)))

    async def _worker(self) -> None:
        while True:
            item = await self._next()
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
