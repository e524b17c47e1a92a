"""The running operator: its master key, sealing keys, world, queue and reconciler.

Start-up order matters for safety: the master key and the world (namespaces,
policies, projected Secrets) are loaded *before* any key is reconciled, so a key is
never judged against a half-known cluster (which could withdraw projections that
are in fact authorized).

With leader election (``settings.leader_election``) every replica loads and watches
the world and reports ready; only the holder of the Lease (``leadership``) loads the
sealing keys, checks the audit anchor and runs the workers, timers and periodic
checks. A leader that cannot renew stops writing before anybody else may lead:
``lost`` ends the process (its Pod restarts it as a standby), as client-go's
controllers do.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from keykeeper.api import labels
from keykeeper.audit.anchor import Anchorer
from keykeeper.audit.events import EventSink
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.reconcile import Reconciler
from keykeeper.controllers.keypolicy import reconcile_policy
from keykeeper.crypto.kdf import MasterKey, PassphraseKdf, derive_master_key
from keykeeper.errors import KeykeeperError
from keykeeper.keys.sealing import SealingKeys
from keykeeper.keys.vault import Vault
from keykeeper.kube.client import (
    ApiUnavailable,
    Conflict,
    Kube,
    keypolicy_path,
    secret_path,
)
from keykeeper.kube.world import KeyRef, World
from keykeeper.providers import registry
from keykeeper.runtime import metrics
from keykeeper.runtime.leadership import Elector
from keykeeper.runtime.serving import Server
from keykeeper.runtime.settings import Settings
from keykeeper.runtime.workqueue import WorkQueue

log = logging.getLogger("keykeeper.runtime")


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
    vault: Vault | None = None
    reconciler: Reconciler | None = None
    sealing: SealingKeys | None = None
    queue: WorkQueue[KeyRef] | None = None
    policy_queue: WorkQueue[str] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    anchorer: Anchorer | None = None
    elector: Elector | None = None
    server: Server | None = None
    leading: bool = False  # the workers run (always, without leader election)
    lost: Callable[[], None] = exit_process

    async def stop(self) -> None:
        """Graceful shutdown: the leader anchors the audit log's head and releases the
        Lease, so a standby takes over at its next try."""
        for task in self.tasks:
            task.cancel()
        if self.anchorer is not None and self.leading:
            try:
                await self.anchorer.anchor()
            except KeykeeperError as exc:  # no longer sure to lead, or the API is away
                log.warning("could not anchor the audit log at shutdown: %s", exc)
        if self.elector is not None:
            await self.elector.release()
        if self.server is not None:
            await self.server.stop()
        if self.vault is not None:
            self.vault.close()
        await self.kube.close()

    async def start(self) -> None:
        if self.settings.http_address:
            self.server = Server(self.settings.http_address, self.ready.is_set)
            await self.server.start()
        metrics.WORLD.snapshot = self.snapshot
        master = await self._master_key()
        self.vault = Vault(master, registry)
        audit = AuditLog(
            self.settings.audit_log,
            self.vault.audit_key,
            mirror=sys.stdout if self.settings.audit_stdout else None,
        )
        self.anchorer = Anchorer(
            self.kube,
            self.settings.namespace,
            audit,
            self.vault.audit_key,
            writer=self.settings.instance,
        )
        sink = EventSink(self.kube, self.settings.instance)
        self.reconciler = Reconciler(
            self.kube, self.world, self.vault, sink, audit, self.settings.namespace
        )
        self.queue = WorkQueue(self._reconcile, self.settings.workers)
        vault = self.vault

        async def policy(name: str) -> float | None:
            return await reconcile_policy(
                self.kube, self.world, vault, name, self.settings.namespace
            )

        self.policy_queue = WorkQueue(policy, 1)
        self.reconciler.policy_changed = self.policy_queue.add
        loop = asyncio.get_running_loop()

        def provider_back() -> None:  # from a probe's thread
            loop.call_soon_threadsafe(self._provider_back)

        self.vault.on_provider_recovery = provider_back
        for attempt in range(60):  # the apiserver may still be warming its caches
            try:
                await self._preload()
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
            self.elector = Elector(self.kube, self.settings.namespace, identity, self._lost)
            self.kube.write_guard = self.elector.fence  # from now on, only the leader writes
            self.tasks.append(asyncio.create_task(self.elector.run(), name="keykeeper-leader"))
        self.tasks.append(asyncio.create_task(self._lead(), name="keykeeper-lead"))

    async def _lead(self) -> None:
        """Once leading (at once without election): the sealing keys, the audit anchor,
        then the workers. A failed step is retried; nothing is written before it."""
        if self.elector is not None:
            await self.elector.leading.wait()
        assert self.anchorer is not None and self.queue is not None  # noqa: PT018
        assert self.policy_queue is not None
        attempt = 0
        while True:
            try:
                await self._sealing_keys()
                await self.anchorer.check_at_start()
                break
            except KeykeeperError as exc:
                attempt += 1
                log.warning("starting to lead (attempt %d): %s", attempt, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(attempt, 6)))
        self.leading = True
        self.tasks += [
            asyncio.create_task(self.queue.run(), name="keykeeper-keys"),
            asyncio.create_task(self.policy_queue.run(), name="keykeeper-policies"),
            asyncio.create_task(self.anchorer.run(), name="keykeeper-audit-anchor"),
            asyncio.create_task(self._sealing_loop(), name="keykeeper-sealing-keys"),
        ]

    def _lost(self) -> None:
        """The Lease could not be renewed in time: stop every worker now, then end."""
        self.leading = False
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.lost()

    async def _reconcile(self, ref: KeyRef) -> float | None:
        """One reconcile, measured: its duration, its errors, and the projection lag of
        a new generation it finished."""
        assert self.reconciler is not None
        pending = self.world.changed_at.get(ref)
        started = time.monotonic()
        try:
            delay = await self.reconciler.reconcile(ref)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        if pending is not None and self.world.changed_at.get(ref) == pending:
            del self.world.changed_at[ref]
            metrics.PROJECTION_LAG.observe(asyncio.get_running_loop().time() - pending[1])
        return delay

    def snapshot(self) -> metrics.Snapshot:
        now = time.time()
        facts = list(self.world.facts.values())
        return metrics.Snapshot(
            phases=dict(Counter(f.phase for f in facts)),
            version_ages=tuple(now - f.version_created for f in facts if f.version_created),
            to_rotation=tuple(f.next_rotation - now for f in facts if f.next_rotation),
            queue_depth=self.queue.depth if self.queue is not None else 0,
            leader=self.leading,
            leader_transitions=self.elector.transitions if self.elector else int(self.leading),
            ready=self.ready.is_set(),
        )

    def _provider_back(self) -> None:
        """A KMS answers again: the keys that failed on a provider (and the policies, whose
        Ready says so) are looked at now, not when their backoff ends."""
        if self.queue is None or self.reconciler is None:
            return
        for ref in list(self.reconciler.provider_failures):
            self.queue.add(ref)
        if self.policy_queue is not None:
            for name in list(self.world.policies):
                self.policy_queue.add(name)

    async def _master_key(self) -> MasterKey:
        path = secret_path(self.settings.namespace, self.settings.master_key_secret)
        found = await self.kube.get_or_none(path)
        data = (found or {}).get("data") or {}
        if self.settings.passphrase_file is not None:
            passphrase = self.settings.passphrase_file.read_text().strip()
            if "kdf" in data:
                kdf = PassphraseKdf.decode(base64.b64decode(data["kdf"]).decode())
            else:
                kdf = PassphraseKdf.new(fips=self.settings.fips)
                await self._create_master_secret({"kdf": kdf.encode().encode()})
            return derive_master_key(passphrase, kdf)
        if "master-key" in data:
            return MasterKey(base64.b64decode(data["master-key"]))
        if found is not None:
            # never generate a new key over an existing Secret: every envelope would be lost
            raise KeykeeperError(
                f"Secret {self.settings.namespace}/{self.settings.master_key_secret} exists but "
                "holds no master-key (nor kdf, in passphrase mode); refusing to start"
            )
        master = MasterKey.generate()
        if not await self._create_master_secret({"master-key": master.export()}):
            return await self._master_key()  # another replica made it first
        log.warning(
            "generated a new master key in Secret %s/%s; back it up: without it no "
            "stored key can be opened",
            self.settings.namespace,
            self.settings.master_key_secret,
        )
        return master

    async def _create_master_secret(self, data: dict[str, bytes]) -> bool:
        """The Secret holds the raw key bytes (base64 only as every Secret's data is)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.settings.master_key_secret,
                "namespace": self.settings.namespace,
                "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: "master-key"},
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            await self.kube.create(secret_path(self.settings.namespace), body)
        except Conflict:
            return False
        return True

    async def _sealing_keys(self) -> None:
        assert self.vault is not None
        self.sealing = SealingKeys(
            self.kube,
            self.settings.namespace,
            self.vault.local,
            self.settings.sealing_renewal,
            self.settings.sealing_cutoff,
        )
        await self.sealing.load()
        self.vault.sealing_keys = self.sealing.usable()
        self.vault.sealing_refusal = self.sealing.refusal

    async def _sealing_loop(self) -> None:
        """Renewal, renewal requests, the cutoff and the published ConfigMap, checked
        every ``settings.sealing_check`` seconds; a failed check is logged and retried."""
        assert self.sealing is not None and self.vault is not None  # noqa: PT018
        while True:
            await asyncio.sleep(self.settings.sealing_check)
            try:
                await self.sealing.check()
            except KeykeeperError as exc:
                log.warning("checking the sealing keys: %s", exc)
            self.vault.sealing_keys = self.sealing.usable()

    async def _preload(self) -> None:
        assert self.vault is not None
        assert self.queue is not None
        for ns in await self.kube.list("/api/v1/namespaces"):
            self.world.put_namespace(ns)
        for body in await self.kube.list(keypolicy_path()):
            self.policy_queue.add(self.world.put_policy(body).name)  # type: ignore[union-attr]
        selector = f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION}"
        for secret in await self.kube.list("/api/v1/secrets", selector):
            self.world.put_secret(secret, self.vault.fingerprint, self.vault.prove)
        for key in await self.kube.list("/apis/keykeeper.dev/v1alpha1/apikeys"):
            ref = self.world.put_key(key)
            self.world.generations[ref] = int(key["metadata"].get("generation") or 0)
            # kopf's first list of the watch delivers every key again: the same key is no
            # change (it waits in the sweep), a changed one goes before the sweep
            self.world.saw_key(ref, key)
            self.queue.sweep(ref)
