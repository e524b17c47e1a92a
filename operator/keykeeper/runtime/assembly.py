"""The parts of a started operator, built once from the settings and the master key.

``assemble`` is the one place that wires the layers together: the keyring and the
provider cache (credentials read through ``kube``, calls counted by ``metrics``), the
sealing keys handed to the reconciler that opens sealed values, the audit log and its
anchor, the Event sink, the reconcilers and their work queues. ``preload`` fills the
world before any key is reconciled.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keykeeper.api import labels
from keykeeper.audit.anchor import Anchorer
from keykeeper.audit.events import EventSink
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.reconcile import Reconciler
from keykeeper.controllers.keypolicy import reconcile_policy
from keykeeper.crypto.kdf import MasterKey
from keykeeper.keys.keyring import Keyring
from keykeeper.keys.sealing import SealingKeys
from keykeeper.kube.client import Kube
from keykeeper.kube.credentials import credentials_reader
from keykeeper.kube.paths import keypolicy_path
from keykeeper.kube.workloads import WorkloadIndex, kinds_for
from keykeeper.kube.world import World
from keykeeper.providers import registry
from keykeeper.providers.cache import ProviderCache
from keykeeper.runtime import memory, metrics
from keykeeper.runtime.keyfacts import KeyFactsBook, PerKey
from keykeeper.runtime.leadership import Elector
from keykeeper.runtime.settings import Settings
from keykeeper.runtime.workqueue import WorkQueue
from keykeeper.types import KeyRef


@dataclass(frozen=True)
class Parts:
    keyring: Keyring
    providers: ProviderCache
    sealing: SealingKeys
    audit: AuditLog
    anchorer: Anchorer
    sink: EventSink
    reconciler: Reconciler
    queue: WorkQueue[KeyRef]
    policy_queue: WorkQueue[str]
    facts: KeyFactsBook

    @property
    def workloads(self) -> WorkloadIndex:
        index = self.reconciler.restarter.index
        assert index is not None
        return index

    def snapshot(self, leading: bool, elector: Elector | None, ready: bool) -> metrics.Snapshot:
        now = time.time()
        facts = list(self.facts.facts.values())
        return metrics.Snapshot(
            phases=dict(Counter(f.phase for f in facts)),
            expiring=sum(1 for f in facts if f.expiry == "Expiring"),
            expired=sum(1 for f in facts if f.expiry == "Expired"),
            unprojected=sum(1 for f in facts if f.unprojected),
            version_ages=tuple(now - f.version_created for f in facts if f.version_created),
            to_rotation=tuple(f.next_rotation - now for f in facts if f.next_rotation),
            queue_depth=self.queue.depth,
            leader=leading,
            leader_transitions=elector.transitions if elector else int(leading),
            ready=ready,
            events_dropped=self.sink.dropped,
            api_throttled=self.reconciler.kube.throttled,
            anchor_age=self.anchorer.age() if leading else 0.0,
            unanchored=self.anchorer.unanchored() if leading else 0,
            audit_failures=self.audit.failures,
            audit_reserve_released=self.audit.reserve.released,
            restarts=dict(self.reconciler.restarter.results),
            per_key=self._per_key(),
            providers_down=self.providers.health(),
        )

    def _per_key(self) -> PerKey | None:
        if not self.facts.owner_label:
            return None  # per-key series off
        return self.facts.series(self.reconciler.world.namespaces)


def facts_book(settings: Settings) -> KeyFactsBook:
    """Per-key series on: the owner label is kept ("" keeps none, and exports none)."""
    return KeyFactsBook(
        owner_label=settings.owner_label if settings.per_key_metrics else "",
        owner_from_namespace=settings.owner_from == "namespace",
    )


def assemble(
    settings: Settings,
    kube: Kube,
    world: World,
    master: MasterKey,
    *,
    on_provider_recovery: Callable[[], None] | None = None,
) -> Parts:
    keyring = Keyring(master)
    facts = facts_book(settings)
    world.on_status = facts.status_seen
    providers = ProviderCache(
        registry,
        keyring.local,
        credentials_reader(kube),
        on_recovery=on_provider_recovery,
        observer=metrics.KmsMetrics(),
    )
    sealing = SealingKeys(
        kube,
        settings.namespace,
        keyring.local,
        settings.sealing_renewal,
        settings.sealing_cutoff,
        v1_until=settings.sealed_v1_until,
    )
    audit = audit_log(settings, keyring)
    anchorer = Anchorer(
        kube, settings.namespace, audit, keyring.audit_key, writer=settings.instance
    )
    audit.on_segment = anchorer.soon
    sink = EventSink(kube, settings.instance)
    reconciler = Reconciler(
        kube, world, keyring, providers, sealing, sink, audit, settings.namespace
    )
    kinds = kinds_for(settings.argo_rollouts)
    reconciler.restarter.kinds = kinds
    reconciler.restarter.index = WorkloadIndex(kinds)  # kept by a lean watch while leading

    async def policy(name: str) -> float | None:
        return await reconcile_policy(kube, world, providers, name, settings.namespace)

    policy_queue: WorkQueue[str] = WorkQueue(policy, 1)
    reconciler.policy_changed = policy_queue.add
    queue: WorkQueue[KeyRef] = WorkQueue(
        measured(reconciler, facts), settings.workers, enforce=timed(reconciler)
    )
    return Parts(
        keyring,
        providers,
        sealing,
        audit,
        anchorer,
        sink,
        reconciler,
        queue,
        policy_queue,
        facts,
    )


def audit_log(settings: Settings, keyring: Keyring) -> AuditLog:
    return AuditLog(
        settings.audit_log,
        keyring.audit_key,
        mirror=sys.stdout if settings.audit_stdout else None,
        shown=keyring.shown,
        segment_bytes=settings.audit_segment_bytes,
        kept=settings.audit_segments_kept,
    )


def measured(
    reconciler: Reconciler, facts: KeyFactsBook
) -> Callable[[KeyRef], Awaitable[float | None]]:
    """One reconcile, measured: its duration, its errors, and the projection lag of a new
    generation it finished."""

    async def reconcile(ref: KeyRef) -> float | None:
        pending = facts.changed_at.get(ref)
        started = time.monotonic()
        try:
            delay = await reconciler.reconcile(ref)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        if pending is not None and facts.changed_at.get(ref) == pending:
            del facts.changed_at[ref]
            metrics.PROJECTION_LAG.observe(asyncio.get_running_loop().time() - pending[1])
        return delay

    return reconcile


def timed(reconciler: Reconciler) -> Callable[[KeyRef, float], Awaitable[None]]:
    """The enforcement lane's pass, timed from the change being queued to its withdrawals."""

    async def enforce(ref: KeyRef, queued_at: float) -> None:
        if await reconciler.enforcer.enforce(ref):
            metrics.WITHDRAWAL_SECONDS.observe(asyncio.get_running_loop().time() - queued_at)

    return enforce


async def preload(kube: Kube, world: World, parts: Parts) -> None:
    """The world before any reconcile: namespaces, policies, projected Secrets, keys."""
    for ns in await kube.list("/api/v1/namespaces"):
        world.put_namespace(ns)
    for body in await kube.list(keypolicy_path()):
        parts.policy_queue.add(world.put_policy(body).name)
    selector = f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION}"
    for secret in await kube.list("/api/v1/secrets", selector):
        world.put_secret(secret, parts.keyring.fingerprint, parts.keyring.prove)
    async for page in kube.pages("/apis/keykeeper.dev/v1alpha1/apikeys"):
        for key in page:
            ref = world.put_key(key)
            parts.facts.listed(ref, key)
            # kopf's first list of the watch delivers every key again: the same key is no
            # change (it waits in the sweep), a changed one goes before the sweep
            world.echoes.saw_key(ref, key)
            parts.queue.sweep(ref)
        del page
    memory.release()  # the list's garbage given back to the system
