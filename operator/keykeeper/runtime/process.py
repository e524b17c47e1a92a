"""The running operator: its parts built once, in the order safety needs.

Start-up order matters for safety: the master key and the world (namespaces,
policies, projected Secrets) are loaded *before* any key is reconciled, so a key is
never judged against a half-known cluster (which could withdraw projections that
are in fact authorized).

``Parts`` is the frozen set of what a started operator is made of; ``assemble`` builds
it from the settings and the master key, and nothing is assigned to it afterwards.

With leader election (``settings.leader_election``) every replica loads and watches
the world and reports ready; only the holder of the Lease (``leadership``) loads the
sealing keys, checks the audit anchor and runs the workers, timers and periodic
checks. A leader that cannot renew stops writing before anybody else may lead:
``lost`` ends the process (its Pod restarts it as a standby), as client-go's
controllers do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from keykeeper.errors import KeykeeperError, NotStarted
from keykeeper.keys.bootstrap import load_master_key
from keykeeper.kube.client import ApiUnavailable, Kube
from keykeeper.kube.world import World
from keykeeper.runtime import metrics
from keykeeper.runtime.assembly import Parts, assemble, preload
from keykeeper.runtime.leadership import Elector
from keykeeper.runtime.loopwatch import watch_loop
from keykeeper.runtime.metricsauth import Reviewer
from keykeeper.runtime.serving import Server
from keykeeper.runtime.settings import Settings

log = logging.getLogger("keykeeper.runtime")

__all__ = ["Parts", "Runtime", "exit_process"]


def exit_process() -> None:
    """Leadership was lost: nothing may be written any more. End at once (no graceful
    stop: that would anchor and release as if still leading); the Pod restarts."""
    logging.shutdown()
    sys.stdout.flush()
    os._exit(1)


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    world: World = field(default_factory=World)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    leading: bool = False  # the workers run (always, without leader election)
    lost: Callable[[], None] = exit_process
    _parts: Parts | None = None
    _elector: Elector | None = None
    _server: Server | None = None

    @property
    def parts(self) -> Parts:
        if self._parts is None:
            raise NotStarted("the operator has not started")
        return self._parts

    async def stop(self) -> None:
        """Graceful shutdown: the leader rolls the workloads whose restart window is
        open, anchors the audit log's head and releases the Lease, so a standby takes
        over at its next try."""
        for task in self.tasks:
            task.cancel()
        if self._parts is not None and self.leading:
            try:  # restart windows still open roll now: a rollout owed is not dropped
                await self._parts.reconciler.restarter.flush()
            except KeykeeperError as exc:
                log.warning("could not roll the workloads owed a restart at shutdown: %s", exc)
            try:
                await self._parts.anchorer.anchor()
            except KeykeeperError as exc:  # no longer sure to lead, or the API is away
                log.warning("could not anchor the audit log at shutdown: %s", exc)
        if self._elector is not None:
            await self._elector.release()
        if self._server is not None:
            await self._server.stop()
        if self._parts is not None:
            self._parts.providers.close()
        await self.kube.close()

    async def start(self) -> None:
        if self.settings.http_address:
            reviewer = Reviewer(self.kube) if self.settings.metrics_auth == "kubernetes" else None
            self._server = Server(self.settings.http_address, self.ready.is_set, reviewer)
            await self._server.start()
        metrics.WORLD.snapshot = self.snapshot
        master = await load_master_key(
            self.kube,
            self.settings.namespace,
            self.settings.master_key_secret,
            passphrase_file=self.settings.passphrase_file,
            fips=self.settings.fips,
        )
        loop = asyncio.get_running_loop()

        def provider_back() -> None:  # from a probe's thread
            loop.call_soon_threadsafe(self._provider_back)

        self._parts = assemble(
            self.settings,
            self.kube,
            self.world,
            master,
            on_provider_recovery=provider_back,
        )
        for attempt in range(60):  # the apiserver may still be warming its caches
            try:
                await preload(self.kube, self.world, self._parts)
                break
            except ApiUnavailable as exc:
                if attempt == 59:
                    raise
                log.info("waiting for the API to load the world: %s", exc)
                await asyncio.sleep(1.0)
        self.ready.set()
        if self.settings.leader_election:
            # client-go's convention: the Pod's name and a per-process suffix, so a
            # restarted container is a new candidate, never the old holder resumed
            identity = f"{self.settings.instance}_{uuid.uuid4().hex[:8]}"
            self._elector = Elector(self.kube, self.settings.namespace, identity, self._lost)
            self.kube.write_guard = self._elector.fence  # from now on, only the leader writes
            self.tasks.append(asyncio.create_task(self._elector.run(), name="keykeeper-leader"))
        self.tasks.append(asyncio.create_task(self._lead(), name="keykeeper-lead"))
        self.tasks.append(asyncio.create_task(watch_loop(), name="keykeeper-loop-watch"))

    async def _lead(self) -> None:
        """Once leading (at once without election): the sealing keys, the audit anchor,
        then the workers. A failed step is retried; nothing is written before it."""
        if self._elector is not None:
            await self._elector.leading.wait()
        parts = self.parts
        attempt = 0
        while True:
            try:
                await parts.sealing.load()
                await parts.anchorer.check_at_start()
                break
            except KeykeeperError as exc:
                attempt += 1
                log.warning("starting to lead (attempt %d): %s", attempt, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(attempt, 6)))
        self.leading = True
        self.tasks += [
            asyncio.create_task(parts.queue.run(), name="keykeeper-keys"),
            asyncio.create_task(parts.policy_queue.run(), name="keykeeper-policies"),
            asyncio.create_task(parts.anchorer.run(), name="keykeeper-audit-anchor"),
            asyncio.create_task(parts.workloads.run(self.kube), name="keykeeper-workloads"),
            asyncio.create_task(self._sealing_loop(), name="keykeeper-sealing-keys"),
        ]

    def snapshot(self) -> metrics.Snapshot:
        if self._parts is None:
            return metrics.Snapshot(leader=self.leading, ready=self.ready.is_set())
        return self._parts.snapshot(self.leading, self._elector, self.ready.is_set())

    def _lost(self) -> None:
        """The Lease could not be renewed in time: stop every worker now, then end."""
        self.leading = False
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.lost()

    def _provider_back(self) -> None:
        """A KMS answers again: the keys that failed on a provider (and the policies, whose
        Ready says so) are looked at now, not when their backoff ends."""
        if self._parts is None:
            return
        for ref in list(self._parts.reconciler.provider_failures):
            self._parts.queue.add(ref)
        for name in list(self.world.policies):
            self._parts.policy_queue.add(name)

    async def _sealing_loop(self) -> None:
        """Renewal, renewal requests, the cutoff and the published ConfigMap, checked
        every ``settings.sealing_check`` seconds; a failed check is logged and retried."""
        while True:
            await asyncio.sleep(self.settings.sealing_check)
            try:
                await self.parts.sealing.check()
            except KeykeeperError as exc:
                log.warning("checking the sealing keys: %s", exc)
