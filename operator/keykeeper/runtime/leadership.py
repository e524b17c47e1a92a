"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection.

Every replica watches and keeps its world warm; only the holder of the Lease
``<operator namespace>/keykeeper-leader`` reconciles, writes or rotates. The rules are
client-go's, with its standard durations:

* a replica takes the Lease when it is absent, released (no holder), or when its
  record has not changed for ``lease_duration`` by this replica's own clock (clocks
  of different machines are never compared);
* the leader renews every ``retry_period``; if no renewal succeeds for
  ``renew_deadline`` (shorter than the lease duration) it stops leading *before*
  anybody else may take the Lease: ``on_lost`` is called and must stop all writing;
* every write is an update with the resourceVersion read, so two replicas that
  race for a free Lease cannot both win;
* every write but the Lease's own is fenced (``fence``, installed as the API client's
  write guard): a replica that does not hold the Lease, or whose last renewal is older
  than the renew deadline, writes nothing, even if its renew loop has not run yet;
* a graceful stop releases the Lease (no holder, duration 1 s), so the next replica
  takes over at its next try instead of after a whole lease duration.

Two refinements make a standby take over *within* the lease duration of the leader's
last renewal, where client-go's polling can take up to two retry periods more: a
standby watches the Lease, so it observes each renewal when it happens (not up to a
retry period later), and it tries again exactly when the observed record expires (not
at the next retry tick). Neither shortens the time it waits after the last renewal it
saw, which is what keeps two leaders apart; without the watch, polling still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keykeeper.api.timestamps import rfc3339_micro as _micro
from keykeeper.errors import Conflict, KeykeeperError, NotFound, NotLeading
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import lease_path
from keykeeper.types import Body

REVIEWS = ("/apis/authentication.k8s.io/", "/apis/authorization.k8s.io/")  # not writes
log = logging.getLogger("keykeeper.leadership")

LEASE_NAME = "keykeeper-leader"


@dataclass(frozen=True)
class Durations:
    """client-go's defaults (and controller-runtime's): 15 s, 10 s, 2 s."""

    lease: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease:
            raise ValueError("leader election needs retry period < renew deadline < lease")


class Elector:
    """Holds or waits for the Lease. ``leading`` is an asyncio.Event set while this
    replica leads; ``run`` returns only by cancellation (``release`` after it)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        on_lost: Callable[[], None],
        durations: Durations | None = None,
        *,
        name: str = LEASE_NAME,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self._kube, self._namespace, self._name = kube, namespace, name
        self.identity = identity
        self._on_lost = on_lost
        self.durations = durations or Durations()
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._wall = wall or (lambda: datetime.now(UTC))
        self.leading = asyncio.Event()
        self.transitions = 0  # times this replica became the leader
        self._observed: tuple[Any, ...] | None = None  # the Lease's spec, as last read
        self._observed_at = 0.0
        self._observed_duration = self.durations.lease
        self._wake = asyncio.Event()
        self._renewed_at = 0.0

    @property
    def path(self) -> str:
        return lease_path(self._namespace, self._name)

    def current(self) -> bool:
        """Leading, and sure of it: the last renewal is younger than the renew deadline.
        A process that was paused (SIGSTOP, a long GC, a frozen VM) is not, from the
        moment it resumes, whatever its renew loop has had time to notice."""
        return (
            self.leading.is_set()
            and self._clock() - self._renewed_at < self.durations.renew_deadline
        )

    def fence(self, method: str, path: str) -> None:
        """``Kube.write_guard``: every write but the Lease's own, and the reviews that
        write nothing (a standby checks its scrapers' tokens too), needs ``current()``."""
        if path.startswith((lease_path(self._namespace), *REVIEWS)) or self.current():
            return
        raise NotLeading(
            f"{method} {path} refused: this replica ({self.identity}) does not hold the "
            "leader Lease, or has not renewed it within the renew deadline"
        )

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        now, wall = self._clock(), self._wall()
        found = await self._kube.get_or_none(self.path)
        if found is None:
            body = self._body(None, wall, transitions=0, acquired=wall)
            try:
                await self._kube.create(lease_path(self._namespace), body)
            except Conflict:
                return False
            return self._won(now)
        spec = found.get("spec") or {}
        self.observe(spec, now)
        holder = spec.get("holderIdentity") or ""
        mine = holder == self.identity
        if holder and not mine and now < self.expires_at:
            return False  # held by another, and renewed within its duration
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        acquired = spec.get("acquireTime") if mine else _micro(wall)
        body = self._body(found, wall, transitions=transitions, acquired=acquired)
        try:
            await self._kube.replace(self.path, body)
        except Conflict:
            return False
        return self._won(now)

    def observe(self, spec: Body, now: float | None = None) -> None:
        """A record seen (read, or delivered by the watch): a changed one starts its
        lease duration now, by this replica's clock."""
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock() if now is None else now
            self._observed_duration = float(
                spec.get("leaseDurationSeconds") or self.durations.lease
            )

    @property
    def expires_at(self) -> float:
        """When the record last observed expires, by this replica's clock."""
        return self._observed_at + self._observed_duration

    async def watch(self) -> None:
        """Observe each renewal as it happens (a standby's accelerator; errors only
        fall back to polling)."""
        query = {"fieldSelector": f"metadata.name={self._name}"}
        while not self.leading.is_set():
            try:
                async for event in self._kube.watch(lease_path(self._namespace), query):
                    spec = (event.get("object") or {}).get("spec") or {}
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.observe(spec)
                    if event.get("type") == "DELETED" or not spec.get("holderIdentity"):
                        self._wake.set()  # released (or gone): try now
            except KeykeeperError as exc:
                log.debug("watching the leader Lease: %s", exc)
            await asyncio.sleep(self.durations.retry_period)

    def next_try_in(self) -> float:
        """Seconds to the next try: a retry period, or the held record's expiry if sooner."""
        wait = self.durations.retry_period
        if self._observed is not None and self._observed[0]:
            wait = min(wait, max(0.01, self.expires_at - self._clock()))
        return wait

    async def _pause(self) -> None:
        wait = self.next_try_in()
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    def _won(self, now: float) -> bool:
        self._renewed_at = now
        self._observed = None  # our own write: the next read is a new observation
        return True

    def _body(self, found: Body | None, wall: datetime, *, transitions: int, acquired: Any) -> Body:
        meta: Body = {"name": self._name, "namespace": self._namespace}
        if found is not None:
            meta["resourceVersion"] = found["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.durations.lease),
                "acquireTime": acquired if isinstance(acquired, str) else _micro(wall),
                "renewTime": _micro(wall),
                "leaseTransitions": transitions,
            },
        }

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except KeykeeperError as exc:  # the API is away: this attempt fails
            log.info("leader election: %s", exc)
            return False

    async def run(self) -> None:
        period = self.durations.retry_period
        watching = asyncio.create_task(self.watch(), name="keykeeper-leader-watch")
        try:
            while True:  # acquire
                if await self._attempt():
                    break
                await self._pause()
        finally:
            watching.cancel()
        self.transitions += 1
        log.info("this replica (%s) leads now", self.identity)
        self.leading.set()
        while True:  # renew, or stop leading before anybody else may take over
            await asyncio.sleep(period)
            if await self._attempt():
                continue
            if self._clock() - self._renewed_at >= self.durations.renew_deadline:
                self.leading.clear()
                log.error(
                    "leader election lost: no renewal for %gs; stopping",
                    self.durations.renew_deadline,
                )
                self._on_lost()
                return

    async def release(self) -> None:
        """A graceful stop: give the Lease up, so the next replica need not wait it out."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            found = await self._kube.get(self.path)
            if (found.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            wall = self._wall()
            body = self._body(
                found,
                wall,
                transitions=int(found["spec"].get("leaseTransitions") or 0),
                acquired=found["spec"].get("acquireTime"),
            )
            body["spec"]["holderIdentity"] = None
            body["spec"]["leaseDurationSeconds"] = 1
            await self._kube.replace(self.path, body)
            log.info("released the leader Lease")
        except (NotFound, Conflict, KeykeeperError) as exc:
            log.warning("could not release the leader Lease: %s", exc)
