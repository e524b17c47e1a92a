"""KeyPolicy status: Ready (spec valid, provider reachable), how many keys it governs,
and how many of them still wait to be re-wrapped after its KMS key changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from keykeeper.api import conditions
from keykeeper.api.conditions import Condition
from keykeeper.api.reasons import Reason
from keykeeper.errors import KeykeeperError
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import keypolicy_path
from keykeeper.kube.world import World
from keykeeper.providers.cache import ProviderCache
from keykeeper.providers.threads import offload


async def reconcile_policy(
    kube: Kube,
    world: World,
    providers: ProviderCache,
    name: str,
    namespace: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> float | None:
    view = world.policies.get(name)
    if view is None:
        return None
    retry: float | None = None
    if view.spec is None:
        ready = Condition(conditions.READY, "False", Reason.INVALID_SPEC, view.error)
    else:
        try:
            provider = await providers.provider_for(view.spec.kms, namespace)
            await offload(provider.executor, provider.check)
            kek = await offload(provider.executor, provider.current_kek_id)  # a KMS call for some
            ready = Condition(
                conditions.READY,
                "True",
                Reason.PROVIDER_REACHABLE,
                f"the {view.spec.kms.provider} provider answers; current KEK {kek}",
            )
        except KeykeeperError as exc:
            ready = Condition(conditions.READY, "False", exc.reason, str(exc))
            retry = 30.0 if exc.transient else None
    old = view.body.get("status") or {}
    status = {
        "observedGeneration": view.generation,
        "governedKeys": len(world.keys_of_policy(name)),
        "keysUnderPreviousKms": world.keys_under_previous_kms(name),
        "conditions": conditions.merge(
            old.get("conditions") or [], [ready], view.generation, clock()
        ),
    }
    if status != old:
        await kube.patch(keypolicy_path(name, status=True), {"status": status})
    return retry
