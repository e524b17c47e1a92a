"""Rollout restarts of the workloads that ask for them when a key rotates.

A Deployment, StatefulSet or DaemonSet opts in on itself, so its owner consents, and
names the source key of each Secret, so no other key writing that name restarts it:

    metadata:
      labels:      {keykeeper.dev/restart-on-rotation: "true"}
      annotations: {keykeeper.dev/restart-on-rotation: "payments/stripe:stripe-api-key"}

(``<ApiKey namespace>/<ApiKey name>:<Secret name>``, comma-separated; a bare Secret
name, the pre-0.5 form, restarts nothing.) When a reconcile writes a new version into a
projected Secret of that namespace (the previous value is still served beside it), each
opted-in workload naming that key and Secret gets **one** patch of its pod template
annotation ``keykeeper.dev/restarted-for`` (``<secret>=<version>,...``), which rolls it
out as ``kubectl rollout restart`` does. Several targets of one key rotating together
restart a workload once; a workload already stamped for those versions is not touched
again. Rotations owed to one workload are gathered for its restart window
(``keykeeper.dev/restart-window``, default 30 s; ``0``: at once), opened by the first:
a username and a password rotated seconds apart roll it out once, with both. The window
is kept in memory: a graceful shutdown rolls every open one at once (``flush``); a
crash inside a window loses that rollout (the workload still has the previous value
beside the new one for the grace period). Each restart is an Event on the workload,
in its namespace, and an audit record; the ApiKey's Event only counts them (a source
tenant learns no workload names).
Workloads are found in the index a lean watch keeps (``kube.workloads``: no request
per rotation), or, while that index is not in step, with one labelled LIST per kind and
namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from keykeeper.api.reasons import EventType, Reason
from keykeeper.api.timestamps import rfc3339
from keykeeper.audit.events import EventSink
from keykeeper.audit.journal import Journal
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.run import Run
from keykeeper.controllers.apikey.stamps import owed, stamp, stamped, window_of
from keykeeper.errors import KeykeeperError, NotFound
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import WORKLOAD_GROUPS, workloads_path
from keykeeper.kube.workloads import KINDS, OPT_IN, RESTARTED_FOR, WorkloadIndex
from keykeeper.types import Body, KeyRef

log = logging.getLogger("keykeeper.restarts")


class Restart(StrEnum):
    """What became of one workload's restart (``keykeeper_restarts_total{result}``)."""

    RESTARTED = "restarted"
    FAILED = "failed"
    GONE = "gone"  # deleted between being found and being patched


Rotated = tuple[str, str, int]  # (namespace, Secret name, version now projected)
Place = tuple[str, str, str]  # (namespace, kind, workload name)
RETRY_ROLL = 10.0  # seconds before a rollout that could not be made is tried again


@dataclass
class Gathered:
    """The rotations owed to one workload while its restart window is open."""

    versions: dict[str, int] = field(default_factory=dict)
    sources: set[KeyRef] = field(default_factory=set)


def restart_patch(kind: str, stamp_text: str, now: datetime) -> Body:
    """What rolls a workload out: its pod template's stamp, as ``kubectl rollout restart``
    does; for an Argo Rollout ``spec.restartAt``, as ``kubectl argo rollouts restart``
    does, with the stamp on the Rollout itself (a template change would be a new
    revision through its whole canary or blue-green strategy)."""
    if kind == "rollouts":
        return {
            "metadata": {"annotations": {RESTARTED_FOR: stamp_text}},
            "spec": {"restartAt": rfc3339(now)},
        }
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR: stamp_text}}}}}


class Restarter:
    def __init__(
        self,
        kube: Kube,
        sink: EventSink,
        index: WorkloadIndex | None = None,
        audit: AuditLog | None = None,
        kinds: dict[str, str] | None = None,
    ) -> None:
        self.kube, self.sink, self.index, self.audit = kube, sink, index, audit
        self.kinds = dict(kinds or KINDS)  # plural -> Kind (``kube.workloads.kinds_for``)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.results: Counter[str] = Counter()  # keykeeper_restarts_total{result}
        self.gathered: dict[Place, Gathered] = {}  # restart windows open
        self._timers: dict[Place, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Restart | None]] = set()

    async def opted_in(self, namespace: str, kind: str) -> list[Body]:
        """The workloads of ``kind`` in ``namespace`` that opt in: from the index when it
        is in step with the cluster, else listed."""
        if self.index is not None and self.index.synced:
            return self.index.workloads(namespace, kind)
        try:
            return await self.kube.list(workloads_path(namespace, kind), label_selector=OPT_IN)
        except NotFound:  # a kind the cluster does not serve (Argo Rollouts not installed)
            return []

    async def restart(self, run: Run, rotated: Iterable[Rotated]) -> None:
        """Roll the workloads that name what ``run`` rotated: at once for a window of 0,
        else gathered with every other rotation owed them until their window closes."""
        by_namespace: dict[str, dict[str, int]] = defaultdict(dict)
        for namespace, secret, version in rotated:
            by_namespace[namespace][secret] = version
        outcomes: Counter[Restart] = Counter()
        gathering = 0
        for namespace, secrets in sorted(by_namespace.items()):
            for kind in self.kinds:
                try:
                    found = await self.opted_in(namespace, kind)
                except KeykeeperError as exc:
                    log.warning("%s/%s: listing %s in %s: %s", *run.ref, kind, namespace, exc)
                    continue
                for workload in found:
                    hits = owed(workload, secrets, run.ref, kind)
                    if hits:
                        place = (namespace, kind, str(workload["metadata"]["name"]))
                        outcome = await self._owe(run, place, workload, hits)
                        if outcome is None:
                            gathering += 1
                        else:
                            outcomes[outcome] += 1
        self.results.update(outcomes)
        self._tell(run, outcomes, gathering)

    async def _owe(
        self, run: Run, place: Place, workload: Body, hits: dict[str, int]
    ) -> Restart | None:
        """A rollout now (a window of 0), or None: gathered until the window closes."""
        window = window_of(workload)
        if window <= 0:
            versions = {**stamped(workload, place[1]), **hits}
            return await self._patch(run.journal, place, workload, versions, {run.ref})
        self._gather(place, Gathered(hits, {run.ref}), window)
        return None

    def _gather(self, place: Place, owed_now: Gathered, window: float) -> None:
        gathered = self.gathered.setdefault(place, Gathered())
        gathered.versions.update(owed_now.versions)
        gathered.sources.update(owed_now.sources)
        if place not in self._timers:  # the first rotation opens the window
            loop = asyncio.get_running_loop()
            self._timers[place] = loop.call_later(window, self._due, place)

    def _tell(self, run: Run, outcomes: Counter[Restart], gathering: int) -> None:
        """Counted on the ApiKey: the workloads are told in their own namespace."""
        done, failed = outcomes[Restart.RESTARTED], outcomes[Restart.FAILED]
        said = [f"restarted {done} opted-in workload(s)"] if done or failed else []
        if failed:
            said.append(f"{failed} could not be restarted")
        if gathering:
            said.append(f"{gathering} opted-in workload(s) restart when their window closes")
        if said:
            kind = EventType.WARNING if failed else EventType.NORMAL
            run.journal.tell(kind, Reason.ROLLOUT_RESTARTED, "; ".join(said))

    def _due(self, place: Place) -> None:
        task = asyncio.create_task(self.roll(place), name=f"keykeeper-restart-{place[2]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def roll(self, place: Place) -> Restart | None:
        """The one rollout a closed window gathered, from the workload as it is now."""
        self._timers.pop(place, None)
        gathered = self.gathered.pop(place, None)
        if gathered is None:
            return None
        namespace, kind, name = place
        try:
            workload = await self.kube.get_or_none(workloads_path(namespace, kind, name))
            outcome = await self._roll_into(place, workload, gathered)
        except KeykeeperError as exc:  # the API or the audit log away: the rollout is still owed
            log.warning("restarting %s/%s in %s: %s; again in %g s", kind, name, namespace, exc,
                        RETRY_ROLL)  # fmt: skip
            self._gather(place, gathered, RETRY_ROLL)  # with what was owed since
            outcome = Restart.FAILED
        if outcome is not None:
            self.results[outcome] += 1
        return outcome

    async def _roll_into(
        self, place: Place, workload: Body | None, gathered: Gathered
    ) -> Restart | None:
        if workload is None:
            return Restart.GONE
        still = {  # what it still names and was not rolled for since
            secret: version
            for source in gathered.sources
            for secret, version in owed(workload, gathered.versions, source, place[1]).items()
        }
        if not still:
            return None  # it stopped opting in, or was rolled already
        journal = Journal(self.audit, min(gathered.sources), "")
        versions = {**stamped(workload, place[1]), **still}
        return await self._patch(journal, place, workload, versions, gathered.sources)

    async def flush(self) -> None:
        """Every open window closed now (a graceful shutdown: no owed rollout is lost)."""
        for place, timer in list(self._timers.items()):
            timer.cancel()
            await self.roll(place)

    async def _patch(
        self,
        journal: Journal,
        place: Place,
        workload: Body,
        versions: dict[str, int],
        sources: set[KeyRef],
    ) -> Restart:
        namespace, kind, name = place
        where, stamp_text = f"{kind}/{name} in {namespace}", stamp(versions)
        await journal.intend(Reason.ROLLOUT_RESTARTED, f"{where} for {stamp_text}")
        patch = restart_patch(kind, stamp_text, self.clock())
        source = "ApiKey " + ", ".join(f"{ns}/{key}" for ns, key in sorted(sources))
        target = {
            "apiVersion": WORKLOAD_GROUPS[kind],
            "kind": self.kinds[kind],
            "metadata": workload["metadata"],
        }
        try:
            await self.kube.patch(workloads_path(namespace, kind, name), patch)
        except NotFound:  # deleted since it was seen: nothing to restart, nothing wrong
            log.info("%s is gone; not restarted", where)
            return Restart.GONE
        except KeykeeperError as exc:  # the rotation stands; the workload restarts by hand
            log.warning("restarting %s: %s", where, exc)
            failure = f"{source} rotated {stamp_text}, but the restart failed: {exc}"
            await self.sink.emit(target, EventType.WARNING, Reason.ROLLOUT_RESTARTED, failure)
            return Restart.FAILED
        told = f"restarted: {source} rotated {stamp_text}"
        await self.sink.emit(target, EventType.NORMAL, Reason.ROLLOUT_RESTARTED, told)
        return Restart.RESTARTED
