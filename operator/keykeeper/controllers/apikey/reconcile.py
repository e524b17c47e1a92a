"""Reconciling one ApiKey: the order of the steps, which is the fail-closed rule of
DESIGN.md §2 made into code.

1. **Admission** (``enforcing.py``). No valid spec, no policy, or a policy that does
   not admit the key's namespace: every projection is withdrawn and nothing else
   happens (no import, no provider call, no store write).
2. **Enforcement** (``enforcing.py``; run alone, at once, by the work queue's
   enforcement lane for a change that may withdraw). The phase comes from the store's
   facts (``lifecycle.decide`` is pure and needs no provider), and every Secret the key
   holds that the plan does not want is withdrawn *before* anything that could fail on
   a provider, a source or a value. Revoked, suspended and unauthorized targets need
   no plaintext.
3. **Versions.** The lifecycle's actions (``versions.py``); only making a version
   calls the provider.
4. **Projection.** Each authorized target is written on its own, all at once
   (``projecting.py``).
5. **Report.** One status write, then Events (``reporting.py``).

Where things are decided: ``authz`` (who may receive), ``lifecycle`` (phase and
actions), ``plan`` (what to write, keep, withdraw, deny), ``status`` and
``narration`` (what to say). All pure; this module only sequences them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

from keykeeper.api import labels
from keykeeper.api.models import ApiKeySpec, ExpiryAction, KeyPolicySpec, Phase
from keykeeper.audit.events import EventSink
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.enforcing import Enforcer
from keykeeper.controllers.apikey.finalizing import Finalizer
from keykeeper.controllers.apikey.gathering import Gatherer, desired
from keykeeper.controllers.apikey.projecting import (
    LazyProvider,
    Projector,
    Values,
    denied,
    projected,
)
from keykeeper.controllers.apikey.reporting import Reporter
from keykeeper.controllers.apikey.restarts import Restarter
from keykeeper.controllers.apikey.rewrapping import rewrap
from keykeeper.controllers.apikey.run import AUDIT_RETRY, SOURCE_RETRY, Run, provider_backoff
from keykeeper.controllers.apikey.sources import SourceMissing, Sources
from keykeeper.controllers.apikey.versions import VersionKeeper
from keykeeper.core import expiry, lifecycle, store
from keykeeper.core.intent import intent_of, rules_of
from keykeeper.core.store import facts
from keykeeper.errors import AuditWriteError, IntegrityError, ProviderError, SpecError
from keykeeper.keys.keyring import Keyring
from keykeeper.keys.revocations import Revocations
from keykeeper.keys.sealing import SealingKeys
from keykeeper.kube.client import Conflict, Kube
from keykeeper.kube.paths import apikey_path, check_identity
from keykeeper.kube.world import World
from keykeeper.providers.cache import ProviderCache
from keykeeper.types import Body, KeyRef


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        world: World,
        keyring: Keyring,
        providers: ProviderCache,
        sealing: SealingKeys,
        sink: EventSink,
        audit: AuditLog,
        namespace: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.world, self.keyring, self.providers = kube, world, keyring, providers
        self.namespace, self.clock, self.audit = namespace, clock, audit
        sources = Sources(kube, keyring, sealing, Revocations(kube, namespace, clock))
        self.keeper = VersionKeeper(kube, keyring, providers, sources, namespace, clock)
        self.projector = Projector(kube, world, keyring)
        self.finalizer = Finalizer(kube, world, self.keeper, self.projector, audit, namespace)
        self.reporter = Reporter(kube, world, sink, clock, keyring.shown)
        self.restarter = Restarter(kube, sink, audit=audit)
        self.gather = Gatherer(world, namespace)
        self.enforcer = Enforcer(
            world, self.gather, self.projector, self.keeper, self.reporter, audit, clock
        )
        self.policy_changed: Callable[[str], None] | None = None
        self.provider_failures: dict[KeyRef, int] = {}  # consecutive, per key

    async def reconcile(self, ref: KeyRef) -> float | None:
        body = await self._body(ref)
        if body is None:
            self.world.drop_key(ref)
            await self.projector.withdraw(
                Run(ref, {"metadata": {"uid": ""}}, audit=self.audit), self.gather.held(ref)
            )
            return None
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            await self.finalizer.finalize(ref, body, self.gather.held(ref), self.reporter.tell)
            return None
        body, added = await self._with_finalizer(ref, body)
        run = Run(ref, body, audit=self.audit, new_key=added and not body.get("status"))
        stored, life = store.Store(run.uid), None
        admitted = await self.enforcer.admit(run)
        if admitted is not None:
            try:
                stored, life = await self._drive(run, *admitted)
            except AuditWriteError as exc:  # a record later in the reconcile: say so, wait
                run.fail(exc, AUDIT_RETRY)
                stored = await self.keeper.read(run.uid)
        await self.reporter.report(run, stored, life)
        if run.provider_failed:
            self.provider_failures[ref] = self.provider_failures.get(ref, 0) + 1
            run.again(provider_backoff(self.provider_failures[ref]))
        else:
            self.provider_failures.pop(ref, None)
        return run.retry

    async def _body(self, ref: KeyRef) -> Body | None:
        """The key as the watch last delivered it (no request); read from the API when the
        watch has not delivered it, and for a deletion (finalizing needs the newest)."""
        body = self.world.body_of(ref)
        if body is not None and not body["metadata"].get("deletionTimestamp"):
            return body
        found = await self.kube.get_or_none(apikey_path(*ref))
        if found is not None:
            check_identity(found, *ref)
            self.world.put_key(found, latest=False)
        return found

    async def _with_finalizer(
        self, ref: KeyRef, body: Body, *, retried: bool = False
    ) -> tuple[Body, bool]:
        """The key with keykeeper's finalizer, and whether this call added it (precondition:
        the resourceVersion seen; a conflict re-reads the key once and tries again)."""
        meta = body["metadata"]
        finalizers = [*(meta.get("finalizers") or []), labels.FINALIZER]
        # what this reconcile sees of the key, recorded before the finalizer patch: its
        # watch echo can arrive before the patch's response does
        self.world.echoes.saw_key(ref, {"metadata": {**meta, "finalizers": finalizers}})
        if labels.FINALIZER in finalizers[:-1]:
            return body, False
        patch = {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}
        try:
            return await self.kube.patch(apikey_path(*ref), {"metadata": patch}), True
        except Conflict:
            fresh = None if retried else await self.kube.get_or_none(apikey_path(*ref))
            if fresh is None:
                raise
            return await self._with_finalizer(ref, check_identity(fresh, *ref), retried=True)

    # -- 2.-4. enforcement, versions, projection -------------------------------------------------

    async def _drive(
        self, run: Run, spec: ApiKeySpec, policy: KeyPolicySpec
    ) -> tuple[store.Store, lifecycle.Decision]:
        stored = await self.keeper.read(run.uid, none_yet=run.new_key)
        intent, rules = intent_of(run.body, spec), rules_of(policy)

        def decide(current: store.Store, source: str | None) -> lifecycle.Decision:
            return lifecycle.decide(intent, rules, facts(current, source), self.clock())

        # enforcement first, on the store's facts alone: the source (an API read) only
        # decides SourceChanged rotations, which never change whether a phase projects
        await self.enforcer.withdraw_unwanted(run, spec, policy, decide(stored, None).phase, stored)
        seen = await self.keeper.sources.seen(run.ref, spec)
        source_fp = seen.fingerprint
        issued = stored.current.value_expires_at if stored.current else None  # an issuer's
        intent = self._expiry(
            run, spec.expires_at or seen.expires_at or issued or "", policy, intent
        )
        life = decide(stored, source_fp)
        providers = LazyProvider(lambda: self.providers.provider_for(policy.kms, self.namespace))
        try:
            if life.phase is not Phase.REVOKED and stored.kek_differs(policy.kms):
                stored = await self._rewrapped(run, stored, policy, providers)
            for _ in range(6):  # each pass applies the actions the last decision asked for
                if not life.actions:
                    break
                stored = await self.keeper.apply(
                    run, spec, policy, providers.get, stored, life.actions
                )
                life = decide(stored, source_fp)
            stored = await self.keeper.settled(run, stored)  # revocations asked of the issuer
        except SourceMissing as exc:
            run.fail(exc, SOURCE_RETRY)
        except AuditWriteError as exc:  # no record, no new version: the phase decided stands
            run.fail(exc, AUDIT_RETRY)
        except (ProviderError, SpecError, IntegrityError) as exc:
            run.fail(exc)  # a provider's failure is retried with backoff (run.provider_trouble)
        try:
            await self._project(run, spec, policy, life.phase, stored, providers)
        except IntegrityError as exc:
            stored = await self.keeper.record_integrity_failure(
                run.ref, stored, str(exc), run.journal
            )
            life = decide(stored, source_fp)
            await self.enforcer.withdraw_unwanted(run, spec, policy, life.phase, stored)
            await self._project(run, spec, policy, life.phase, stored, providers)
        if run.rotated:  # a new version is served: roll the workloads that asked for it
            await self.restarter.restart(run, run.rotated)
        self._note_kms(run.ref, spec.policy, stored.kek_differs(policy.kms))
        if life.recheck_after is not None:
            run.again(max(life.recheck_after.total_seconds(), 0.05))
        stored = await self.finalizer.finish_erasure(run, stored)  # pending KEKs, retried
        if stored.keks_pending:
            run.provider_trouble()
        return stored, life

    async def _rewrapped(
        self, run: Run, stored: store.Store, policy: KeyPolicySpec, providers: LazyProvider
    ) -> store.Store:
        return await rewrap(
            self.keeper,
            run.ref,
            stored,
            policy.kms,
            await self._opening(stored, policy, providers).get(),
            await providers.get(),
            run.journal,
        )

    def _expiry(
        self,
        run: Run,
        expires_at: datetime | str,  # the spec's, or the source Secret's annotation ("": none)
        policy: KeyPolicySpec,
        intent: lifecycle.Intent,
    ) -> lifecycle.Intent:
        """The value's expiry as conditions, a time to look again, and, if the policy says
        so, an expired value withdrawn as a suspended key's is."""
        stated = expiry.stated(expires_at) if expires_at else None
        found = expiry.assess(stated, policy.alerts.expiring_delta, self.clock())
        run.extra += found.conditions
        run.value_expires_at = found.at
        if found.recheck_after is not None:
            run.again(max(found.recheck_after.total_seconds(), 1.0))
        if found.expired and policy.alerts.on_expiry is ExpiryAction.SUSPEND:
            return dataclasses.replace(intent, suspended=True)
        return intent

    async def _project(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        phase: Phase,
        stored: store.Store,
        providers: LazyProvider,
    ) -> None:
        planned = self.gather.targets(run, spec, policy, phase, stored)
        await self.projector.withdraw(run, planned.withdraw)
        run.results = [denied(d) for d in planned.deny]
        for target in planned.keep:
            assert stored.current is not None
            run.results.append(projected(target, stored.current.version))
        values = Values(
            self.keyring, run.ref, run.uid, stored, self._opening(stored, policy, providers)
        )
        wanted = [desired(target, stored, phase) for target in planned.write]
        run.results += await self.projector.write_all(run, wanted, values, stored)

    # -- the KMS a key's envelopes are under -----------------------------------------------------

    def _opening(
        self, stored: store.Store, policy: KeyPolicySpec, providers: LazyProvider
    ) -> LazyProvider:
        """The provider that opens the stored envelopes: the policy's, or, until they are
        re-wrapped, the one the store records they were made under."""
        if stored.kms is None or not stored.kek_differs(policy.kms):  # also: none recorded
            return providers
        made_under = stored.kms
        return LazyProvider(lambda: self.providers.provider_for(made_under, self.namespace))

    def _note_kms(self, ref: KeyRef, policy: str, stale: bool) -> None:
        if self.world.note_kms(ref, policy, stale) and self.policy_changed is not None:
            self.policy_changed(policy)  # its status counts the keys still to re-wrap
