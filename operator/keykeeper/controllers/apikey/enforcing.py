"""Admission and enforcement: the first two steps of every reconcile, and the whole of
the enforcement lane's pass (finding K2).

Admission refuses a key with no valid spec, no policy, or a policy that does not admit
its namespace, withdrawing every Secret it holds. Enforcement withdraws every Secret
the plan no longer wants (revoked, suspended, de-authorized), from the store's facts
alone. Neither calls a provider or needs a value, so the lane can run them at once
for a change that may withdraw, however busy the reconcile workers are; the key's
whole reconcile follows in its turn and writes the status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from keykeeper.api.models import ApiKeySpec, KeyPolicySpec, Phase
from keykeeper.api.reasons import Reason
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.gathering import Gatherer
from keykeeper.controllers.apikey.projecting import Projector, denied
from keykeeper.controllers.apikey.reporting import Reporter
from keykeeper.controllers.apikey.run import Run, ready
from keykeeper.controllers.apikey.versions import VersionKeeper
from keykeeper.core import authz, lifecycle, plan, store
from keykeeper.core.intent import intent_of, rules_of
from keykeeper.core.store import facts
from keykeeper.errors import SpecError
from keykeeper.kube.world import World
from keykeeper.types import KeyRef

Gathered = tuple[ApiKeySpec, KeyPolicySpec]


class Enforcer:
    def __init__(
        self,
        world: World,
        gather: Gatherer,
        projector: Projector,
        keeper: VersionKeeper,
        reporter: Reporter,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self.world, self.gather, self.projector = world, gather, projector
        self.keeper, self.reporter, self.audit, self.clock = keeper, reporter, audit, clock

    async def enforce(self, ref: KeyRef) -> int:
        """The enforcement lane's pass: withdraw what this key may no longer hold, tell
        it in Events, and nothing else. How many Secrets it withdrew."""
        held = self.gather.held(ref)
        if not held:
            return 0  # nothing projected: nothing to withdraw (and no request)
        body = self.world.body_of(ref)
        run = Run(ref, body or {"metadata": {"uid": ""}}, audit=self.audit)
        if body is None or body["metadata"].get("deletionTimestamp"):
            await self.projector.withdraw(run, held)  # gone, or going: the finalizer ends it
        elif (admitted := await self.admit(run)) is not None:
            spec, policy = admitted
            stored = await self.keeper.read(run.uid)
            intent, rules = intent_of(run.body, spec), rules_of(policy)
            phase = lifecycle.decide(intent, rules, facts(stored, None), self.clock()).phase
            await self.withdraw_unwanted(run, spec, policy, phase, stored)
        await self.reporter.tell(run)
        return len(held) - len(self.gather.held(ref))

    async def admit(self, run: Run) -> Gathered | None:
        """The spec and policy, if the policy may be used by this key at all."""
        try:
            spec = self.world.spec_of(run.body)
        except SpecError as exc:
            run.fail(exc)
            await self.projector.withdraw(run, self.gather.held(run.ref))
            return None
        view = self.world.policies.get(spec.policy)
        policy = view.spec if view else None
        if policy is None:
            why = view.error if view else f"KeyPolicy {spec.policy} does not exist"
            run.ready = ready("False", Reason.POLICY_NOT_FOUND, why)
            await self._deny_all(run, spec, None)
            return None
        if not authz.admits_source(self.gather.context(run.ref, Phase.GENERATED), policy):
            run.ready = ready(
                "False",
                Reason.SOURCE_NOT_ALLOWED,
                f"KeyPolicy {spec.policy} does not admit keys from namespace {run.ref[0]}",
            )
            await self._deny_all(run, spec, policy)
            return None
        return spec, policy

    async def withdraw_unwanted(
        self, run: Run, spec: ApiKeySpec, policy: KeyPolicySpec, phase: Phase, stored: store.Store
    ) -> None:
        await self.projector.withdraw(
            run, self.gather.targets(run, spec, policy, phase, stored).withdraw
        )

    async def _deny_all(self, run: Run, spec: ApiKeySpec, policy: KeyPolicySpec | None) -> None:
        decisions = self.gather.decisions(run.ref, spec, policy, Phase.GENERATED)
        planned = plan.make(decisions, self.gather.held(run.ref))
        await self.projector.withdraw(run, planned.withdraw)
        run.results = [denied(d) for d in planned.deny]
