"""A keyed work queue: each ApiKey is worked on by at most one worker at a time.

Adding a key that is already waiting is a no-op; adding one that is being worked on
marks it to run once more afterwards, so no change is lost and none is handled
twice at once. A reconcile that raises is retried with exponential backoff; one that
returns a delay is looked at again after it (the lifecycle's ``recheck_after``).

Three lanes, each served round-robin by namespace (``FairQueue``), the first that has
a key going first:

* ``ENFORCE`` holds changes that may withdraw (a spec change such as ``revoked``, a
  deletion, a policy or namespace change). Its work is the enforcement pass alone: no
  provider, no value, no status. It has workers of its own besides, so a flood of
  rotations, or a slow KMS holding every other worker, never delays a withdrawal
  (finding K2). The key is queued in ``CHANGE`` too, for the whole reconcile.
* ``CHANGE`` holds every other change.
* ``SWEEP`` holds the start-up pass over every known key: worked only when nothing
  else waits, so a change made while 100,000 keys are being looked at after a restart
  is reconciled at once. A key waiting in the sweep that is added normally moves up.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from keykeeper.errors import KeykeeperError
from keykeeper.runtime.fairqueue import FairQueue

log = logging.getLogger("keykeeper.queue")
K = TypeVar("K", bound=Hashable)

MIN_BACKOFF = 0.5
MAX_BACKOFF = 300.0
ENFORCERS = 2  # workers that serve the enforcement lane only


class Lane(enum.Enum):
    ENFORCE = "enforce"
    CHANGE = "change"
    SWEEP = "sweep"


ALL_LANES = (Lane.ENFORCE, Lane.CHANGE, Lane.SWEEP)

# the enforcement pass of one key, given when its change was queued (loop time)
Enforce = Callable[[K, float], Awaitable[None]]


class WorkQueue(Generic[K]):
    def __init__(
        self,
        work: Callable[[K], Awaitable[float | None]],
        concurrency: int = 4,
        enforce: Enforce[K] | None = None,
    ) -> None:
        self._work, self._enforce = work, enforce
        self._concurrency = concurrency
        self._lanes: dict[Lane, FairQueue[K]] = {lane: FairQueue() for lane in Lane}
        self._ready = asyncio.Event()
        self._active: set[K] = set()
        self._dirty: dict[K, set[Lane]] = {}  # lanes to queue a key in once it is done
        self._queued_at: dict[K, float] = {}  # enforcement asked for, since (loop time)
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
            self._dirty.setdefault(item, set()).add(Lane.CHANGE)
        elif self._lanes[Lane.CHANGE].push(item):
            self._lanes[Lane.SWEEP].discard(item)  # up from the sweep lane, if it was there
            self._ready.set()

    def enforce(self, item: K) -> None:
        """Queue the enforcement pass of ``item`` (and its whole reconcile after it)."""
        self.add(item)
        if self._enforce is None:
            return
        self._queued_at.setdefault(item, asyncio.get_running_loop().time())
        if item in self._active:
            self._dirty.setdefault(item, set()).add(Lane.ENFORCE)
        elif self._lanes[Lane.ENFORCE].push(item):
            self._ready.set()

    def sweep(self, item: K) -> None:
        """Queue ``item`` in the lowest lane (unless it is waiting or being worked on)."""
        if item in self._active or item in self._lanes[Lane.CHANGE]:
            return
        if self._lanes[Lane.SWEEP].push(item):
            self._ready.set()

    @property
    def depth(self) -> int:
        """Keys waiting for their reconcile, in the change and sweep lanes."""
        return len(self._lanes[Lane.CHANGE]) + len(self._lanes[Lane.SWEEP])

    async def _next(self, lanes: tuple[Lane, ...]) -> tuple[Lane, K]:
        while True:
            for lane in lanes:
                while (item := self._lanes[lane].pop()) is not None:
                    if item not in self._active:
                        return lane, item
                    if lane is not Lane.SWEEP:  # worked on in another lane: once more after
                        self._dirty.setdefault(item, set()).add(lane)
            self._ready.clear()
            await self._ready.wait()

    def _fire(self, item: K) -> None:
        self._timers.pop(item, None)
        self.add(item)

    async def run(self) -> None:
        workers = [self._worker(ALL_LANES) for _ in range(self._concurrency)]
        if self._enforce is not None:
            workers += [self._worker((Lane.ENFORCE,)) for _ in range(ENFORCERS)]
        await asyncio.gather(*workers)

    async def _worker(self, lanes: tuple[Lane, ...]) -> None:
        while True:
            lane, item = await self._next(lanes)
            self._active.add(item)
            try:
                delay: float | None = None
                if lane is Lane.ENFORCE:
                    await self._enforced(item)
                else:
                    delay = await self._reconciled(item)
            finally:
                self._active.discard(item)
            again = self._dirty.pop(item, set())
            if Lane.ENFORCE in again:
                self.enforce(item)
            elif Lane.CHANGE in again:
                self.add(item)
            elif delay is not None:
                self.add(item, delay)

    async def _enforced(self, item: K) -> None:
        assert self._enforce is not None
        queued_at = self._queued_at.pop(item, asyncio.get_running_loop().time())
        try:
            await self._enforce(item, queued_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the key's whole reconcile, queued too, tries again
            log.warning("enforcement pass of %s failed (%s: %s)", item, type(exc).__name__, exc)

    async def _reconciled(self, item: K) -> float | None:
        try:
            delay: float | None = await self._work(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one key's failure never stops the others
            failures = self._failures.get(item, 0) + 1
            self._failures[item] = failures
            backoff = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** min(failures, 12))
            transient = isinstance(exc, KeykeeperError) and exc.transient
            log.log(
                logging.INFO if transient else logging.WARNING,
                "reconcile of %s failed (%s: %s); retrying in %.1fs",
                item,
                type(exc).__name__,
                exc,
                backoff,
                exc_info=not isinstance(exc, KeykeeperError),
            )
            return float(backoff)
        self._failures.pop(item, None)
        return delay
