"""Gathering what the pure plan needs of one key from the world: its context, the
authorization decisions for its targets, the Secrets it holds, which of them are in
sync and which names are taken (cert-manager's gatherer, feeding ``core.plan``).
"""

from __future__ import annotations

from keykeeper.api.models import PROJECTING_PHASES, ApiKeySpec, KeyPolicySpec, Phase
from keykeeper.controllers.apikey.run import Run
from keykeeper.core import authz, plan, projection, store
from keykeeper.core.authz import Decision, KeyContext, NamespaceInfo, Target
from keykeeper.kube.world import World
from keykeeper.types import KeyRef


class Gatherer:
    def __init__(self, world: World, operator_namespace: str) -> None:
        self.world, self.namespace = world, operator_namespace

    def context(self, ref: KeyRef, phase: Phase) -> KeyContext:
        own = self.world.namespaces.get(ref[0], NamespaceInfo(ref[0]))
        return KeyContext(own, phase, frozenset({self.namespace}))

    def decisions(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec | None,
        phase: Phase,
        fields: tuple[str, ...] | None = None,
    ) -> list[tuple[Target, Decision]]:
        context = self.context(ref, phase)
        return authz.plan(context, spec, ref[1], policy, self.world.namespaces, fields)

    def held(self, ref: KeyRef) -> list[plan.Held]:
        return [plan.Held(s.namespace, s.name, s.uid) for s in self.world.secrets_of(ref)]

    def targets(
        self, run: Run, spec: ApiKeySpec, policy: KeyPolicySpec, phase: Phase, stored: store.Store
    ) -> plan.Plan:
        if phase in PROJECTING_PHASES and stored.current is None:
            phase = Phase.GENERATED  # nothing to project yet
        current = stored.current
        fields = current.fields if current is not None else None
        decisions = self.decisions(run.ref, spec, policy, phase, fields)
        synced, taken = set(), set()
        for target, decision in decisions:
            slot = (target.namespace, target.secret_name)
            there = self.world.projected.get(slot)
            if there is None or not decision.allowed:
                continue
            if there.owner != run.ref:
                taken.add(slot)
            elif projection.in_sync(desired(target, stored, phase), there, run.ref, run.uid):
                synced.add(slot)
        return plan.make(
            decisions, self.held(run.ref), frozenset(synced), frozenset(taken), home=run.ref[0]
        )


def desired(target: Target, stored: store.Store, phase: Phase) -> projection.Desired:
    current = stored.current
    assert current is not None  # a projecting phase has a current version
    previous = stored.previous if phase is Phase.ROTATED else None
    if previous is not None and previous.fields != current.fields:
        previous = None  # .previous only beside a value of the same fields
    return projection.Desired(
        target,
        current.version,
        current.fingerprint,
        previous.version if previous else None,
        previous.fingerprint if previous else None,
        target.shape,
    )
