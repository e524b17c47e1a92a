"""Reconciling one ApiKey: gather what is, decide what should be, act on the difference.

Gathering reads the ApiKey and its store Secret from the API and everything else
from the :class:`~keykeeper.world.World` the watches keep. Deciding is pure
(``authz.plan``, ``conditions.merge``). Acting writes only what differs, in an order
that is safe to interrupt: a value version is stored (encrypted) before any
projection uses it; projections are written before the status that reports them.
A reconcile of a key whose world did not change writes nothing at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keykeeper import authz, conditions, events, labels, lifecycle, projection, store
from keykeeper.api import (
    API_VERSION,
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
    InvalidValue,
    KeyDisabled,
    KeykeeperError,
    ProviderError,
    ProviderUnavailable,
    SpecError,
)
from keykeeper.events import EventSink
from keykeeper.kube import Body, Conflict, Kube, NotFound, apikey_path, secret_path
from keykeeper.providers import KeyProvider
from keykeeper.vault import Vault
from keykeeper.versions import SourceMissing, VersionKeeper, destroy_keks, facts, record
from keykeeper.world import KeyRef, World

log = logging.getLogger("keykeeper.reconcile")

SOURCE_RETRY = 30.0
PROVIDER_RETRY = 15.0


@dataclass
class Outcome:
    """What one reconcile found and did, for status, Events and the audit log."""

    ready: Condition = field(
        default_factory=lambda: Condition(
            conditions.READY, "True", "Ready", "the key is stored and reconciled"
        )
    )
    projections: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


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
            await self._withdraw_all(ref, None)
            return None
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
        return await self._reconcile_live(ref, body)

    async def _reconcile_live(self, ref: KeyRef, body: Body) -> float | None:
        outcome = Outcome()
        uid = body["metadata"]["uid"]
        try:
            spec = parse_apikey_spec(body.get("spec"))
        except SpecError as exc:
            outcome.ready = Condition(conditions.READY, "False", "InvalidSpec", str(exc))
            await self._report(ref, body, None, store.Store(uid), outcome, None)
            return None
        policy_view = self.world.policies.get(spec.policy)
        policy = policy_view.spec if policy_view else None
        stored = await self.keeper.read(uid)
        retry: float | None = None
        decision: lifecycle.Decision | None = None
        if policy is None:
            why = policy_view.error if policy_view else f"KeyPolicy {spec.policy} does not exist"
            outcome.ready = Condition(conditions.READY, "False", events.POLICY_NOT_FOUND, why)
        else:
            try:
                provider = await self.vault.provider_for(policy.kms, self.kube, self.namespace)
                intent, rules = _intent(body, spec), _rules(policy)
                source_fp = await self.keeper.source_fingerprint(ref, spec)
                observed = facts(stored, source_fp)
                life = lifecycle.decide(intent, rules, observed, self.clock())
                for _ in range(6):  # each pass applies the actions the last decision asked for
                    if not life.actions:
                        break
                    stored = await self.keeper.apply(
                        ref, spec, policy, provider, stored, life.actions, outcome.notes
                    )
                    life = lifecycle.decide(intent, rules, facts(stored, source_fp), self.clock())
                decision = life
                try:
                    await self._project(
                        ref, body, spec, policy, provider, stored, decision, outcome
                    )
                except IntegrityError as exc:
                    stored = await self.keeper.record_integrity_failure(
                        ref, stored, str(exc), outcome.notes
                    )
                    decision = lifecycle.decide(
                        intent, rules, facts(stored, source_fp), self.clock()
                    )
                    outcome.projections.clear()
                    await self._project(
                        ref, body, spec, policy, provider, stored, decision, outcome
                    )
                if decision.recheck_after is not None:
                    retry = max(decision.recheck_after.total_seconds(), 0.05)
            except InvalidValue as exc:
                outcome.ready = Condition(conditions.READY, "False", events.INVALID_VALUE, str(exc))
            except SourceMissing as exc:
                outcome.ready = Condition(
                    conditions.READY, "False", events.SOURCE_NOT_FOUND, str(exc)
                )
                retry = SOURCE_RETRY
            except ProviderUnavailable as exc:
                outcome.ready = Condition(
                    conditions.READY, "False", events.PROVIDER_UNAVAILABLE, str(exc)
                )
                outcome.projections = list((body.get("status") or {}).get("projections") or [])
                retry = PROVIDER_RETRY
            except IntegrityError as exc:
                outcome.ready = Condition(
                    conditions.READY, "False", events.INTEGRITY_FAILURE, str(exc)
                )
            except (KeyDisabled, ProviderError) as exc:
                outcome.ready = Condition(conditions.READY, "False", exc.reason, str(exc))
                outcome.projections = list((body.get("status") or {}).get("projections") or [])
                retry = PROVIDER_RETRY
        if policy is None or stored.current is None:
            # nothing may be projected: withdraw whatever is there, report every request denied
            if policy is None:
                denial = Decision(False, authz.POLICY_NOT_FOUND, outcome.ready.message)
            elif outcome.ready.status == "False":
                denial = Decision(
                    False,
                    outcome.ready.reason,
                    "the key has no usable value: " + outcome.ready.message,
                )
            else:
                phase = decision.phase if decision else Phase.GENERATED
                denial = Decision(False, authz.KEY_NOT_PROJECTING, f"the key is {phase}")
            await self._deny_all(ref, body, spec, denial, outcome)
        await self._report(ref, body, spec, stored, outcome, decision)
        return retry

    def _plan(
        self, ref: KeyRef, spec: ApiKeySpec, policy: KeyPolicySpec | None, phase: Phase
    ) -> list[tuple[Target, Decision]]:
        own = self.world.namespaces.get(ref[0], NamespaceInfo(ref[0]))
        return authz.plan(KeyContext(own, phase), spec, ref[1], policy, self.world.namespaces)

    async def _project(
        self,
        ref: KeyRef,
        body: Body,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: KeyProvider,
        stored: store.Store,
        life: lifecycle.Decision,
        outcome: Outcome,
    ) -> None:
        current = stored.current
        plan = self._plan(ref, spec, policy, life.phase)
        existing = {(s.namespace, s.name): s for s in self.world.secrets_of(ref)}
        previous = stored.previous if life.phase is Phase.ROTATED else None
        values: dict[int, bytes] = {}

        async def value_of(version: store.Version) -> bytes:
            if version.version not in values:
                binding = Binding(ref[0], ref[1], stored.uid, version.version)
                values[version.version] = await self.vault.open(
                    stored.envelopes[version.version], binding, provider
                )
            return values[version.version]

        wanted: set[tuple[str, str]] = set()
        for target, decision in plan:
            slot = (target.namespace, target.secret_name)
            if not decision.allowed:
                outcome.projections.append(self._denied(target, decision, body))
                continue
            assert current is not None  # a projecting phase has a current version
            desired = projection.Desired(
                target,
                current.version,
                current.fingerprint,
                previous.version if previous else None,
                previous.fingerprint if previous else None,
            )
            holder = self.world.projected.get(slot)
            if holder is not None and holder.owner != ref:
                outcome.projections.append(self._taken(target, body, outcome))
                continue
            wanted.add(slot)
            if projection.in_sync(desired, holder, ref):
                outcome.projections.append(_projected(target, current.version))
                continue
            written = await self._write_projection(
                ref,
                desired,
                await value_of(current),
                await value_of(previous) if previous else None,
            )
            if written is None:
                wanted.discard(slot)
                outcome.projections.append(self._taken(target, body, outcome))
                continue
            repaired = holder is not None
            message = (
                f"{'restored' if repaired else 'projected'} version {current.version} "
                f"into {target.namespace}/{target.secret_name}"
            )
            outcome.notes.append((events.NORMAL, events.PROJECTED, message))
            record(
                self.audit,
                events.PROJECTED,
                ref,
                stored.uid,
                current,
                f"{target.namespace}/{target.secret_name}{' (repaired)' if repaired else ''}",
            )
            outcome.projections.append(_projected(target, current.version))
        for slot, secret in existing.items():
            if slot not in wanted:
                await self._withdraw(
                    ref, secret.namespace, secret.name, secret.uid, outcome, stored.uid
                )
        self._mark_withdrawn(outcome, body)

    async def _write_projection(
        self, ref: KeyRef, desired: projection.Desired, value: bytes, previous: bytes | None
    ) -> Body | None:
        """Create or replace the projected Secret; None if someone else's Secret has the name."""
        target = desired.target
        rendered = projection.render(desired, ref, value, previous)
        try:
            written = await self.kube.create(secret_path(target.namespace), rendered)
        except Conflict:
            there = await self.kube.get_or_none(secret_path(target.namespace, target.secret_name))
            if there is None:
                written = await self.kube.create(secret_path(target.namespace), rendered)
            elif not projection.owned_by(there, ref):
                return None
            else:
                rendered["metadata"]["resourceVersion"] = there["metadata"]["resourceVersion"]
                written = await self.kube.replace(
                    secret_path(target.namespace, target.secret_name), rendered
                )
        self.world.put_secret(written, self.vault.fingerprint)
        self.world.note_own_write("secret", (target.namespace, target.secret_name), written)
        return written

    async def _withdraw(
        self,
        ref: KeyRef,
        namespace: str,
        name: str,
        uid: str | None,
        outcome: Outcome | None,
        key_uid: str,
    ) -> None:
        if await self.kube.delete(secret_path(namespace, name), uid=uid or None):
            record(
                self.audit, events.PROJECTION_WITHDRAWN, ref, key_uid, None, f"{namespace}/{name}"
            )
            if outcome is not None:
                outcome.notes.append(
                    (events.NORMAL, events.PROJECTION_WITHDRAWN, f"withdrew {namespace}/{name}")
                )
                outcome.projections = [
                    p
                    if (p["namespace"], p["secretName"]) != (namespace, name)
                    or p["state"] != "Denied"
                    else {**p, "state": "Withdrawn"}
                    for p in outcome.projections
                ]
        self.world.drop_secret((namespace, name))

    async def _withdraw_all(self, ref: KeyRef, outcome: Outcome | None, key_uid: str = "") -> None:
        known = {(s.namespace, s.name): s.uid for s in self.world.secrets_of(ref)}
        selector = (
            f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION},"
            f"{labels.APIKEY_NAMESPACE}={ref[0]},{labels.APIKEY_NAME}={ref[1]}"
        )
        for item in await self.kube.list("/api/v1/secrets", selector):
            meta = item["metadata"]
            known[(meta["namespace"], meta["name"])] = meta["uid"]
        for (namespace, name), uid in sorted(known.items()):
            await self._withdraw(ref, namespace, name, uid, outcome, key_uid)

    async def _deny_all(
        self,
        ref: KeyRef,
        body: Body,
        spec: ApiKeySpec,
        reason: Decision,
        outcome: Outcome,
    ) -> None:
        if outcome.projections:
            return
        keep = outcome.ready.reason in (events.PROVIDER_UNAVAILABLE, "KeyDisabled", "ProviderError")
        for target, _ in authz.requested_targets(spec, ref[1], self.world.namespaces.values()):
            outcome.projections.append(self._denied(target, reason, body))
        if not keep:  # a transient provider failure never withdraws what is projected
            for secret in self.world.secrets_of(ref):
                await self._withdraw(
                    ref, secret.namespace, secret.name, secret.uid, outcome, body["metadata"]["uid"]
                )
            self._mark_withdrawn(outcome, body)

    def _denied(self, target: Target, decision: Decision, body: Body) -> dict[str, Any]:
        return {
            "namespace": target.namespace,
            "secretName": target.secret_name,
            "state": "Denied",
            "reason": decision.reason,
            "message": decision.message,
        }

    def _taken(self, target: Target, body: Body, outcome: Outcome) -> dict[str, Any]:
        return {
            "namespace": target.namespace,
            "secretName": target.secret_name,
            "state": "Denied",
            "reason": "SecretNameTaken",
            "message": f"{target.namespace}/{target.secret_name} exists and is not this key's; "
            "keykeeper never overwrites a Secret it does not manage",
        }

    def _mark_withdrawn(self, outcome: Outcome, body: Body) -> None:
        """A target that was Projected (or Withdrawn) before and is denied now is Withdrawn."""
        before = {
            (p.get("namespace"), p.get("secretName")): p.get("state")
            for p in (body.get("status") or {}).get("projections") or []
        }
        for index, item in enumerate(outcome.projections):
            if (
                item["state"] == "Denied"
                and item["reason"] != "SecretNameTaken"
                and before.get((item["namespace"], item["secretName"]))
                in ("Projected", "Withdrawn")
            ):
                outcome.projections[index] = {**item, "state": "Withdrawn"}

    # -- deletion ------------------------------------------------------------------------------

    async def _finalize(self, ref: KeyRef, body: Body) -> None:
        uid = body["metadata"]["uid"]
        await self._withdraw_all(ref, None, uid)
        stored = await self.keeper.read(uid)
        destroyed = await self._destroy_keks(ref, body, stored)
        if await self.kube.delete(secret_path(self.namespace, store.store_name(uid))):
            detail = "store destroyed on deletion" + (
                f"; KEKs destroyed: {', '.join(destroyed)}" if destroyed else ""
            )
            record(self.audit, events.ERASED, ref, uid, None, detail)
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

    async def _destroy_keks(self, ref: KeyRef, body: Body, stored: store.Store) -> list[str]:
        """On deletion, per-key KEKs go with the key; a provider that cannot be reached is
        logged and skipped (the store's envelopes are deleted all the same)."""
        view = self.world.policies.get(str((body.get("spec") or {}).get("policy", "")))
        if not stored.versions or view is None or view.spec is None:
            return []
        try:
            provider = await self.vault.provider_for(view.spec.kms, self.kube, self.namespace)
            return await destroy_keks(provider, stored)
        except KeykeeperError as exc:
            log.warning("%s/%s: per-key KEKs not destroyed on deletion: %s", ref[0], ref[1], exc)
            return []

    # -- reporting -----------------------------------------------------------------------------

    async def _report(
        self,
        ref: KeyRef,
        body: Body,
        spec: ApiKeySpec | None,
        stored: store.Store,
        outcome: Outcome,
        life: lifecycle.Decision | None,
    ) -> None:
        old = body.get("status") or {}
        now = self.clock()
        generation = body["metadata"].get("generation", 0)
        by_type = {c.type: c for c in (life.conditions if life else ())}
        ready = outcome.ready
        if ready.status == "True" and conditions.READY in by_type:
            ready = by_type[conditions.READY]  # Suspended, Revoked, Erased, IntegrityFailure
        outcome.ready = ready
        wanted = [ready, _projected_condition(outcome.projections)]
        if conditions.ROTATION_DUE in by_type:
            wanted.append(by_type[conditions.ROTATION_DUE])
        merged = conditions.merge(old.get("conditions") or [], wanted, generation, now)
        phase = life.phase if life else Phase(old.get("phase") or Phase.GENERATED)
        current = stored.current
        rotating = phase in (Phase.ACTIVE, Phase.ROTATED, Phase.ROTATION_PENDING)
        next_at = life.next_rotation_at if life and rotating else None
        status: dict[str, Any] = {
            "phase": phase.value,
            "currentVersion": current.version if current else None,
            "nextRotationAt": conditions.rfc3339(next_at) if next_at else None,
            "versions": [v.status() for v in stored.versions] or None,
            "projections": outcome.projections or None,
            "observedGeneration": generation,
            "conditions": merged,
        }
        status = {k: v for k, v in status.items() if v is not None}
        if status != old:
            patch = {**{k: None for k in old if k not in status}, **status}
            written = await self.kube.patch(apikey_path(*ref, status=True), {"status": patch})
            self.world.note_own_write("apikey", ref, written)
        await self._announce(ref, body, old, status, outcome, stored.uid)

    async def _announce(
        self,
        ref: KeyRef,
        body: Body,
        old: dict[str, Any],
        new: dict[str, Any],
        outcome: Outcome,
        uid: str,
    ) -> None:
        notes = list(outcome.notes)
        old_phase, new_phase = old.get("phase"), new.get("phase")
        if (
            new_phase != old_phase
            and new_phase == Phase.SUSPENDED
            and outcome.ready.status == "True"
        ):
            notes.append(
                (events.NORMAL, events.SUSPENDED, "suspended: projections withdrawn, material kept")
            )
            record(self.audit, events.SUSPENDED, ref, uid, None, "spec.suspended")
        if old_phase == Phase.SUSPENDED and new_phase in (
            Phase.ACTIVE,
            Phase.ROTATED,
            Phase.ROTATION_PENDING,
        ):
            notes.append((events.NORMAL, events.REINSTATED, "reinstated: projections restored"))
            record(self.audit, events.REINSTATED, ref, uid, None, "")
        due = _condition(new, conditions.ROTATION_DUE)
        if (
            due.get("reason") == "AwaitingNewValue"
            and _condition(old, conditions.ROTATION_DUE).get("reason") != "AwaitingNewValue"
        ):
            notes.append((events.WARNING, events.ROTATION_DUE, str(due.get("message", ""))))
            record(self.audit, events.ROTATION_DUE, ref, uid, None, "awaiting a new source value")
        old_ready: dict[str, Any] = next(
            (c for c in old.get("conditions") or [] if c.get("type") == conditions.READY), {}
        )
        if outcome.ready.status == "False" and old_ready.get("reason") != outcome.ready.reason:
            notes.append((events.WARNING, outcome.ready.reason, outcome.ready.message))
            record(self.audit, outcome.ready.reason, ref, uid, None, outcome.ready.message[:200])
        before = {
            (p.get("namespace"), p.get("secretName")): p for p in old.get("projections") or []
        }
        for item in outcome.projections:
            prior = before.get((item["namespace"], item["secretName"]))
            if item["state"] == "Denied" and (
                prior is None or prior.get("reason") != item["reason"]
            ):
                notes.append(
                    (
                        events.WARNING,
                        events.PROJECTION_DENIED,
                        f"{item['namespace']}/{item['secretName']}: "
                        f"{item['reason']}: {item['message']}",
                    )
                )
                record(
                    self.audit,
                    events.PROJECTION_DENIED,
                    ref,
                    uid,
                    None,
                    f"{item['namespace']}/{item['secretName']}: {item['reason']}",
                )
        for type_, reason, message in notes:
            log.info("%s/%s: %s: %s", ref[0], ref[1], reason, message)
            await self.sink.emit(_ref_body(body), type_, reason, message)


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
                "%s/%s: ignoring unreadable %s=%r",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                labels.ROTATE_REQUESTED_AT,
                requested[:40],
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


def _projected(target: Target, version: int) -> dict[str, Any]:
    return {
        "namespace": target.namespace,
        "secretName": target.secret_name,
        "version": version,
        "state": "Projected",
    }


def _projected_condition(items: list[dict[str, Any]]) -> Condition:
    done = sum(1 for p in items if p["state"] == "Projected")
    if not items:
        return Condition(
            conditions.PROJECTED,
            "False",
            "NoProjectionsRequested",
            "spec.projections requests no target",
        )
    if done == len(items):
        return Condition(
            conditions.PROJECTED,
            "True",
            "AllProjected",
            f"projected into {done} of {len(items)} requested targets",
        )
    reason = "PartiallyProjected" if done else "NotProjected"
    return Condition(
        conditions.PROJECTED,
        "False",
        reason,
        f"projected into {done} of {len(items)} requested targets",
    )


def _ref_body(body: Body) -> Body:
    return {"apiVersion": API_VERSION, "kind": "ApiKey", "metadata": body["metadata"]}
