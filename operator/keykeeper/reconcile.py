"""Reconciling one ApiKey: gather what is, decide what should be, act on the difference.

The order is the fail-closed rule of DESIGN.md §2 made into code:

1. **Admission.** No spec, no policy, or a policy that does not admit the key's
   namespace: every projection is withdrawn and nothing else happens (no import, no
   provider call, no store write).
2. **Enforcement.** The phase comes from the store's facts (``lifecycle.decide`` is
   pure and needs no provider), and every Secret the key holds that the plan does not
   want is withdrawn *before* anything that could fail on a provider, a source or a
   value. Revoked, suspended and unauthorized targets need no plaintext.
3. **Versions.** The lifecycle's actions; only making a version calls the provider.
4. **Projection.** Each authorized target is written on its own: a failing target
   (immutable, quota, a provider without plaintext for it) is reported and never
   stops the others. A copy that can no longer be brought up to date is withdrawn.
5. **Report.** One status patch, then Events; status says what exists.

A reconcile of a key whose world did not change writes nothing at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keykeeper import authz, conditions, events, labels, lifecycle, plan, projection, store
from keykeeper.api import (
    API_VERSION,
    PROJECTING_PHASES,
    ApiKeySpec,
    KeyPolicySpec,
    Phase,
    parse_apikey_spec,
)
from keykeeper.audit import AuditLog
from keykeeper.authz import Decision, KeyContext, NamespaceInfo, Target
from keykeeper.conditions import Condition
from keykeeper.crypto.envelope import Binding
from keykeeper.errors import (
    IntegrityError,
    KeykeeperError,
    ProviderError,
    SpecError,
)
from keykeeper.events import EventSink
from keykeeper.kube import Body, Conflict, Kube, NotFound, apikey_path, check_identity, secret_path
from keykeeper.plan import TargetState
from keykeeper.providers import KeyProvider
from keykeeper.status import TargetResult, compose, mark_withdrawn
from keykeeper.vault import Vault
from keykeeper.versions import SourceMissing, VersionKeeper, facts, record
from keykeeper.world import KeyRef, World

log = logging.getLogger("keykeeper.reconcile")

SOURCE_RETRY = 30.0
PROVIDER_RETRY = 15.0
TARGET_RETRY = 10.0
Note = tuple[str, str, str]  # (Event type, reason, message)


def _ready(status: conditions.Status, reason: str, message: str) -> Condition:
    return Condition(conditions.READY, status, reason, message)


@dataclass
class Run:
    """What one reconcile of one key found and did."""

    ref: KeyRef
    body: Body
    ready: Condition = field(
        default_factory=lambda: _ready("True", "Ready", "the key is stored and reconciled")
    )
    results: list[TargetResult] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    retry: float | None = None

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def fail(self, exc: KeykeeperError, retry: float | None = None) -> None:
        self.ready = _ready("False", exc.reason, str(exc))
        self.again(retry)

    def again(self, after: float | None) -> None:
        if after is not None:
            self.retry = after if self.retry is None else min(self.retry, after)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        world: World,
        vault: Vault,
        sink: EventSink,
        audit: AuditLog,
        namespace: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.world = world
        self.vault = vault
        self.sink = sink
        self.audit = audit
        self.namespace = namespace
        self.clock = clock
        self.keeper = VersionKeeper(kube, vault, audit, namespace, clock)

    # -- entry point ---------------------------------------------------------------------------

    async def reconcile(self, ref: KeyRef) -> float | None:
        body = await self.kube.get_or_none(apikey_path(*ref))
        if body is None:
            self.world.drop_key(ref)
            await self._withdraw(Run(ref, {"metadata": {"uid": ""}}), self._held(ref))
            return None
        check_identity(body, *ref)
        self.world.put_key(body)
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finalize(ref, body)
            return None
        if labels.FINALIZER not in (meta.get("finalizers") or []):
            body = await self.kube.patch(
                apikey_path(*ref),
                {
                    "metadata": {
                        "finalizers": [*(meta.get("finalizers") or []), labels.FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
            self.world.note_own_write("apikey", ref, body)
        run = Run(ref, body)
        spec, _policy, life, stored = await self._reconcile_live(run)
        await self._report(run, spec, stored, life)
        return run.retry

    async def _reconcile_live(
        self, run: Run
    ) -> tuple[ApiKeySpec | None, KeyPolicySpec | None, lifecycle.Decision | None, store.Store]:
        ref, empty = run.ref, store.Store(run.uid)
        try:
            spec = parse_apikey_spec(run.body.get("spec"))
        except SpecError as exc:
            run.fail(exc)
            await self._withdraw(run, self._held(ref))
            return None, None, None, empty
        view = self.world.policies.get(spec.policy)
        policy = view.spec if view else None
        if policy is None:
            why = view.error if view else f"KeyPolicy {spec.policy} does not exist"
            run.ready = _ready("False", events.POLICY_NOT_FOUND, why)
            await self._deny_all(run, spec, None, Phase.GENERATED)
            return spec, None, None, empty
        if not authz.admits_source(self._context(ref, Phase.GENERATED), policy):
            # the policy is not used at all: no import, no provider, no store
            run.ready = _ready(
                "False",
                authz.SOURCE_NOT_ALLOWED,
                f"KeyPolicy {spec.policy} does not admit keys from namespace {ref[0]}",
            )
            await self._deny_all(run, spec, policy, Phase.GENERATED)
            return spec, policy, None, empty
        stored = await self.keeper.read(run.uid)
        stored = await self._finish_erasure(run, stored)
        intent, rules = _intent(run.body, spec), _rules(policy)
        source_fp = await self.keeper.source_fingerprint(ref, spec)
        life = lifecycle.decide(intent, rules, facts(stored, source_fp), self.clock())
        await self._enforce(run, spec, policy, life.phase, stored)
        providers = _Lazy(lambda: self.vault.provider_for(policy.kms, self.kube, self.namespace))
        try:
            for _ in range(6):  # each pass applies the actions the last decision asked for
                if not life.actions:
                    break
                stored = await self.keeper.apply(
                    ref, spec, policy, providers.get, stored, life.actions, run.notes
                )
                life = lifecycle.decide(intent, rules, facts(stored, source_fp), self.clock())
        except SourceMissing as exc:
            run.fail(exc, SOURCE_RETRY)
        except ProviderError as exc:
            run.fail(exc, PROVIDER_RETRY)
        except (SpecError, IntegrityError) as exc:
            run.fail(exc)
        try:
            await self._project(run, spec, policy, life.phase, stored, providers)
        except IntegrityError as exc:
            stored = await self.keeper.record_integrity_failure(ref, stored, str(exc), run.notes)
            life = lifecycle.decide(intent, rules, facts(stored, source_fp), self.clock())
            run.results.clear()
            await self._enforce(run, spec, policy, life.phase, stored)
            await self._project(run, spec, policy, life.phase, stored, providers)
        if life.recheck_after is not None:
            run.again(max(life.recheck_after.total_seconds(), 0.05))
        stored = await self._finish_erasure(run, stored)
        if stored.keks_pending:
            run.again(PROVIDER_RETRY)
        return spec, policy, life, stored

    # -- gathering -----------------------------------------------------------------------------

    def _context(self, ref: KeyRef, phase: Phase) -> KeyContext:
        own = self.world.namespaces.get(ref[0], NamespaceInfo(ref[0]))
        return KeyContext(own, phase, frozenset({self.namespace}))

    def _decisions(
        self, ref: KeyRef, spec: ApiKeySpec, policy: KeyPolicySpec | None, phase: Phase
    ) -> list[tuple[Target, Decision]]:
        context = self._context(ref, phase)
        return authz.plan(context, spec, ref[1], policy, self.world.namespaces)

    def _held(self, ref: KeyRef) -> list[plan.Held]:
        return [plan.Held(s.namespace, s.name, s.uid) for s in self.world.secrets_of(ref)]

    def _desired(self, target: Target, stored: store.Store, phase: Phase) -> projection.Desired:
        current = stored.current
        assert current is not None  # a projecting phase has a current version
        previous = stored.previous if phase is Phase.ROTATED else None
        return projection.Desired(
            target,
            current.version,
            current.fingerprint,
            previous.version if previous else None,
            previous.fingerprint if previous else None,
        )

    def _plan(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec | None,
        phase: Phase,
        stored: store.Store,
    ) -> plan.Plan:
        if phase in PROJECTING_PHASES and stored.current is None:
            phase = Phase.GENERATED  # nothing to project yet
        decisions = self._decisions(run.ref, spec, policy, phase)
        synced, taken = set(), set()
        for target, decision in decisions:
            slot = (target.namespace, target.secret_name)
            there = self.world.projected.get(slot)
            if there is None or not decision.allowed:
                continue
            if there.owner != run.ref:
                taken.add(slot)
            elif projection.in_sync(self._desired(target, stored, phase), there, run.ref, run.uid):
                synced.add(slot)
        return plan.make(decisions, self._held(run.ref), frozenset(synced), frozenset(taken))

    # -- enforcing (no provider, no value) -------------------------------------------------------

    async def _enforce(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        phase: Phase,
        stored: store.Store,
    ) -> None:
        await self._withdraw(run, self._plan(run, spec, policy, phase, stored).withdraw)

    async def _deny_all(
        self, run: Run, spec: ApiKeySpec, policy: KeyPolicySpec | None, phase: Phase
    ) -> None:
        planned = plan.make(self._decisions(run.ref, spec, policy, phase), self._held(run.ref))
        await self._withdraw(run, planned.withdraw)
        run.results = [_denied(d) for d in planned.deny]

    async def _withdraw(self, run: Run, held: tuple[plan.Held, ...] | list[plan.Held]) -> None:
        """Delete each held Secret (exactly that object: uid precondition). One that cannot
        be deleted now is retried soon and never stops the others."""
        for secret in held:
            where = f"{secret.namespace}/{secret.name}"
            record(self.audit, events.PROJECTION_WITHDRAWN, run.ref, run.uid, None, where)
            try:
                gone = await self.kube.delete(
                    secret_path(secret.namespace, secret.name), uid=secret.uid
                )
            except KeykeeperError as exc:
                log.warning("%s/%s: withdrawing %s failed: %s", *run.ref, where, exc)
                run.again(TARGET_RETRY)
                continue
            if gone:
                run.notes.append((events.NORMAL, events.PROJECTION_WITHDRAWN, f"withdrew {where}"))
            self.world.drop_secret((secret.namespace, secret.name))

    # -- projecting ------------------------------------------------------------------------------

    async def _project(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        phase: Phase,
        stored: store.Store,
        providers: _Lazy,
    ) -> None:
        planned = self._plan(run, spec, policy, phase, stored)
        await self._withdraw(run, planned.withdraw)
        run.results = [_denied(d) for d in planned.deny]
        current = stored.current
        for target in planned.keep:
            assert current is not None
            run.results.append(_projected(target, current.version))
        values = _Values(self.vault, run.ref, run.uid, stored, providers)
        for target in planned.write:
            run.results.append(await self._write_target(run, target, stored, phase, values))

    async def _write_target(
        self, run: Run, target: Target, stored: store.Store, phase: Phase, values: _Values
    ) -> TargetResult:
        """Bring one target up to date; whatever fails here fails for this target only."""
        desired = self._desired(target, stored, phase)
        slot = (target.namespace, target.secret_name)
        held = self.world.projected.get(slot)
        try:
            value = await values.of(desired.version)
            previous = (
                await values.of(desired.previous_version) if desired.previous_version else None
            )
        except ProviderError as exc:  # no plaintext now: what is there stays (it is authorized)
            run.again(PROVIDER_RETRY)
            return _failed(target, exc, int(held.version) if held and held.version else None)
        rendered = projection.render(desired, run.ref, run.uid, self.vault.prove, value, previous)
        where = f"{target.namespace}/{target.secret_name}"
        record(self.audit, events.PROJECTED, run.ref, run.uid, stored.current, where)
        try:
            written = await self._put(run.ref, target, rendered)
        except KeykeeperError as exc:
            run.again(TARGET_RETRY)
            if held is not None and not exc.transient:
                # it cannot be brought up to date (immutable, forbidden): it must not keep
                # serving what it holds
                await self._withdraw(run, [plan.Held(held.namespace, held.name, held.uid)])
            log.warning("%s/%s: projection into %s failed: %s", *run.ref, where, exc)
            return _failed(target, exc, None)
        if written is None:
            return _denied(
                plan.Denial(target, plan.SECRET_NAME_TAKEN, f"{where} exists and is not this key's")
            )
        self.world.put_secret(written, self.vault.fingerprint, self.vault.prove)
        self.world.note_own_write("secret", slot, written)
        verb = "restored" if held is not None else "projected"
        run.notes.append(
            (events.NORMAL, events.PROJECTED, f"{verb} version {desired.version} into {where}")
        )
        return _projected(target, desired.version)

    async def _put(self, ref: KeyRef, target: Target, rendered: Body) -> Body | None:
        """Create or replace the projected Secret; None if someone else's Secret has the name
        (a Secret is this key's only with its ownership proof, never by its labels)."""
        try:
            return await self.kube.create(secret_path(target.namespace), rendered)
        except Conflict:
            there = await self.kube.get_secret(target.namespace, target.secret_name)
        if there is None:
            return await self.kube.create(secret_path(target.namespace), rendered)
        if not projection.owned_by(there, ref, self.vault.prove):
            return None
        rendered["metadata"]["resourceVersion"] = there["metadata"]["resourceVersion"]
        return await self.kube.replace(secret_path(target.namespace, target.secret_name), rendered)

    # -- erasure and deletion --------------------------------------------------------------------

    async def _finish_erasure(self, run: Run, stored: store.Store) -> store.Store:
        """Destroy per-key KEKs still pending; a provider outage retries, never forgets."""
        if not stored.keks_pending:
            return stored
        try:
            return await self.keeper.destroy_pending(run.ref, stored)
        except ProviderError as exc:
            log.warning("%s/%s: KEKs pending destruction: %s", *run.ref, exc)
            return stored

    async def _finalize(self, ref: KeyRef, body: Body) -> None:
        """Withdraw everything, erase the store (per-key KEKs included), then let go.

        The finalizer is held while per-key KEKs cannot be destroyed: the error raised
        makes the queue retry with backoff."""
        run = Run(ref, body)
        await self._withdraw(run, self._held(ref))
        stored = await self.keeper.read(run.uid)
        if stored.resource_version is not None:
            if stored.erased_at is None:
                stored = await self.keeper.erase(ref, stored, run.notes)
            stored = await self.keeper.destroy_pending(ref, stored)
            record(self.audit, events.ERASED, ref, run.uid, None, "store destroyed on deletion")
            await self.kube.delete(
                secret_path(self.namespace, store.store_name(run.uid)),
                uid=await self._store_uid(run.uid),
            )
        finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != labels.FINALIZER]
        with contextlib.suppress(NotFound):
            await self.kube.patch(
                apikey_path(*ref),
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": body["metadata"]["resourceVersion"],
                    }
                },
            )
        self.world.drop_key(ref)

    async def _store_uid(self, key_uid: str) -> str | None:
        found = await self.kube.get_secret(self.namespace, store.store_name(key_uid))
        return None if found is None else str(found["metadata"]["uid"])

    # -- reporting -----------------------------------------------------------------------------

    async def _report(
        self,
        run: Run,
        spec: ApiKeySpec | None,
        stored: store.Store,
        life: lifecycle.Decision | None,
    ) -> None:
        body = run.body
        old = body.get("status") or {}
        by_type = {c.type: c for c in (life.conditions if life else ())}
        if run.ready.status == "True" and conditions.READY in by_type:
            run.ready = by_type[conditions.READY]  # Suspended, Revoked, Erased, IntegrityFailure
        run.results = mark_withdrawn(run.results, old.get("projections") or [])
        phase = life.phase if life else Phase(old.get("phase") or Phase.GENERATED)
        next_at = life.next_rotation_at if life else None
        status = compose(
            old,
            phase=phase,
            versions=stored.versions,
            current=stored.current.version if stored.current else None,
            next_rotation_at=conditions.rfc3339(next_at) if next_at else None,
            ready=run.ready,
            extra=[by_type[conditions.ROTATION_DUE]] if conditions.ROTATION_DUE in by_type else [],
            results=run.results,
            generation=body["metadata"].get("generation", 0),
            now=self.clock(),
        )
        if status != old:
            patch = {**{k: None for k in old if k not in status}, **status}
            written = await self.kube.patch(apikey_path(*run.ref, status=True), {"status": patch})
            self.world.note_own_write("apikey", run.ref, written)
        await self._announce(run, old, status)

    async def _announce(self, run: Run, old: dict[str, Any], new: dict[str, Any]) -> None:
        ref, uid, notes = run.ref, run.uid, list(run.notes)
        old_phase, new_phase = old.get("phase"), new.get("phase")
        if new_phase != old_phase and new_phase == Phase.SUSPENDED and run.ready.status == "True":
            notes.append(
                (events.NORMAL, events.SUSPENDED, "suspended: projections withdrawn, material kept")
            )
            record(self.audit, events.SUSPENDED, ref, uid, None, "spec.suspended")
        if old_phase == Phase.SUSPENDED and new_phase in PROJECTING_PHASES:
            notes.append((events.NORMAL, events.REINSTATED, "reinstated: projections restored"))
            record(self.audit, events.REINSTATED, ref, uid, None, "")
        due = _condition(new, conditions.ROTATION_DUE)
        if (
            due.get("reason") == "AwaitingNewValue"
            and _condition(old, conditions.ROTATION_DUE).get("reason") != "AwaitingNewValue"
        ):
            notes.append((events.WARNING, events.ROTATION_DUE, str(due.get("message", ""))))
            record(self.audit, events.ROTATION_DUE, ref, uid, None, "awaiting a new source value")
        old_ready = _condition(old, conditions.READY)
        if run.ready.status == "False" and old_ready.get("reason") != run.ready.reason:
            notes.append((events.WARNING, run.ready.reason, run.ready.message))
            record(self.audit, run.ready.reason, ref, uid, None, run.ready.message[:200])
        notes.extend(self._denial_notes(run, old))
        for type_, reason, message in notes:
            log.info("%s/%s: %s: %s", ref[0], ref[1], reason, message)
            await self.sink.emit(_ref_body(run.body), type_, reason, message)

    def _denial_notes(self, run: Run, old: dict[str, Any]) -> list[Note]:
        """Warnings for named targets newly denied, and one for the count of unnamed ones."""
        before = {
            (p.get("namespace"), p.get("secretName")): p for p in old.get("projections") or []
        }
        notes: list[Note] = []
        for item in run.results:
            prior = before.get(item.slot)
            if (
                item.named
                and item.state is TargetState.DENIED
                and (prior is None or prior.get("reason") != item.reason)
            ):
                where = f"{item.namespace}/{item.secret_name}"
                notes.append(
                    (
                        events.WARNING,
                        events.PROJECTION_DENIED,
                        f"{where}: {item.reason}: {item.message}",
                    )
                )
                record(
                    self.audit,
                    events.PROJECTION_DENIED,
                    run.ref,
                    run.uid,
                    None,
                    f"{where}: {item.reason}",
                )
        unnamed = sum(1 for r in run.results if not r.named and r.state is TargetState.DENIED)
        if unnamed and unnamed != _unnamed_denied(old):
            notes.append(
                (
                    events.WARNING,
                    events.PROJECTION_DENIED,
                    f"{unnamed} namespaces matched by a namespaceSelector are not authorized "
                    "by the policy; they are counted in status.targets",
                )
            )
        return notes


def _unnamed_denied(status: dict[str, Any]) -> int:
    shown = sum(
        1 for p in status.get("projections") or [] if p.get("state") in ("Denied", "Withdrawn")
    )
    return int((status.get("targets") or {}).get("denied", 0)) - shown


class _Lazy:
    """A value made on first use and kept, for the rest of one reconcile."""

    def __init__(self, make: Callable[[], Awaitable[KeyProvider]]) -> None:
        self._make = make
        self._value: KeyProvider | None = None
        self._error: KeykeeperError | None = None

    async def get(self) -> KeyProvider:
        if self._error is not None:
            raise self._error  # one failing provider is asked once per reconcile
        if self._value is None:
            try:
                self._value = await self._make()
            except KeykeeperError as exc:
                self._error = exc
                raise
        return self._value


class _Values:
    """Plaintext of a key's versions, opened at most once per reconcile, on demand."""

    def __init__(
        self, vault: Vault, ref: KeyRef, uid: str, stored: store.Store, providers: _Lazy
    ) -> None:
        # the AAD binds the live object's uid, never one read back from the store
        self._vault, self._ref, self._uid = vault, ref, uid
        self._stored, self._providers = stored, providers
        self._opened: dict[int, bytes] = {}

    async def of(self, version: int) -> bytes:
        if version not in self._opened:
            binding = Binding(self._ref[0], self._ref[1], self._uid, version)
            self._opened[version] = await self._vault.open(
                self._stored.envelopes[version], binding, await self._providers.get()
            )
        return self._opened[version]


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == type_), {}
    )
    return found


def _intent(body: Body, spec: ApiKeySpec) -> lifecycle.Intent:
    requested = (body["metadata"].get("annotations") or {}).get(labels.ROTATE_REQUESTED_AT)
    at = None
    if requested:
        try:
            at = datetime.fromisoformat(requested.replace("Z", "+00:00"))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
        except ValueError:
            log.warning(
                "%s/%s: ignoring unreadable %s",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                labels.ROTATE_REQUESTED_AT,
            )
    return lifecycle.Intent(
        suspended=spec.suspended,
        revoked=spec.revoked,
        rotate_requested_at=at,
        user_supplied=spec.source.generate is None,
        source_polled=spec.source.secret_ref is not None,
    )


def _rules(policy: KeyPolicySpec) -> lifecycle.Rules:
    return lifecycle.Rules(
        period=policy.rotation.period_delta,
        grace=policy.rotation.grace_delta,
        strategy=policy.rotation.strategy,
        revoked_for=policy.retention.revoked_delta,
    )


def _projected(target: Target, version: int) -> TargetResult:
    return TargetResult(
        target.namespace, target.secret_name, TargetState.PROJECTED, version=version
    )


def _denied(denial: plan.Denial) -> TargetResult:
    target = denial.target
    return TargetResult(
        target.namespace,
        target.secret_name,
        TargetState.DENIED,
        denial.reason,
        denial.message,
        named=denial.named,
    )


def _failed(target: Target, exc: KeykeeperError, holds: int | None) -> TargetResult:
    return TargetResult(
        target.namespace,
        target.secret_name,
        TargetState.FAILED,
        exc.reason if exc.reason != "Error" else "WriteFailed",
        str(exc)[:300],
        version=holds,
        named=not target.selected,
    )


def _ref_body(body: Body) -> Body:
    return {"apiVersion": API_VERSION, "kind": "ApiKey", "metadata": body["metadata"]}


__all__ = ["Reconciler"]
