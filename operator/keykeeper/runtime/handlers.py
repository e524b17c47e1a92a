"""kopf handlers: thin. Each records what it saw in the world and queues the keys
it may affect; the reconciler does the rest. ``memo`` carries the Runtime."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from keykeeper.api import labels
from keykeeper.kube.client import LIST_PAGE
from keykeeper.runtime.process import Runtime

log = logging.getLogger("keykeeper.handlers")


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base serves on.create/update handlers, which keykeeper has none of;
    kopf still built one per watch event, deep-copying the whole body (managedFields
    included): a sixth of the operator's CPU in the fan-out profile. Nothing is built,
    stored or fetched."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def _body(event: kopf.RawEvent) -> dict[str, Any]:
    return dict(event["object"])


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def operator_startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.enabled = False  # keykeeper posts its own Events, with its own reasons
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    # kopf's first list in pages: it holds its current page until every object in it is
    # handled, so one page of all keys was the whole list in memory at a restart (K3)
    settings.watching.chunk_size = LIST_PAGE
    # an idle per-object worker keeps the last event it handled (a whole ApiKey) until
    # it exits: at 5 s every key of a restart's burst was alive at once, and the memory
    # they took stayed with the process (K3)
    settings.queueing.idle_timeout = 0.5
    # projected Secrets only: the store's own writes would be events the handler drops
    settings.watching.label_selectors["v1", "secrets"] = (
        f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION}"
    )
    runtime = _runtime(memo)
    await runtime.start()


@kopf.on.cleanup()
async def operator_cleanup(memo: Any, **_: Any) -> None:
    await _runtime(memo).stop()


@kopf.on.event("keykeeper.dev", "v1alpha1", "apikeys")
async def apikey_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    body = _body(event)
    meta = body["metadata"]
    ref = (meta["namespace"], meta["name"])
    known = ref in runtime.world.key_policy
    if event.get("type") == "DELETED":
        runtime.world.drop_key(ref)
        runtime.parts.queue.enforce(ref)
    else:
        runtime.world.put_key(body)
        runtime.parts.facts.note_generation(ref, body, asyncio.get_running_loop().time())
        if not runtime.world.echoes.key_changed(ref, body):
            return  # nothing the last reconcile did not see (its own writes' echoes included)
        if runtime.world.echoes.may_withdraw(ref, body):
            runtime.parts.queue.enforce(ref)  # the enforcement lane, before any other work
        else:
            runtime.parts.queue.add(ref)  # a rotation request, say: no withdrawal in it
    if not known or event.get("type") == "DELETED":
        # a key came or went: its policy's governedKeys changed
        runtime.parts.policy_queue.add(str((body.get("spec") or {}).get("policy", "")))


@kopf.on.event("keykeeper.dev", "v1alpha1", "keypolicies")
async def keypolicy_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    body = _body(event)
    name = body["metadata"]["name"]
    old = runtime.world.policies.get(name)
    if event.get("type") == "DELETED":
        runtime.world.drop_policy(name)
    else:
        new = runtime.world.put_policy(body)
        runtime.parts.policy_queue.add(name)
        if old is not None and (old.spec, old.error) == (new.spec, new.error):
            return  # a status-only change: the keys are not affected
    for ref in runtime.world.keys_of_policy(name):
        if old is None:
            runtime.parts.queue.add(ref)  # a new policy only grants
        else:  # changed or deleted: it may grant less
            runtime.parts.queue.enforce(ref)


@kopf.on.event("v1", "namespaces")
async def namespace_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    body = _body(event)
    name = body["metadata"]["name"]
    created = name not in runtime.world.namespaces  # withdraws nothing: only adds targets
    before = (
        runtime.world.drop_namespace(name)
        if event.get("type") == "DELETED"
        else runtime.world.put_namespace(body)
    )
    if before is not None:  # what authorization sees of it changed
        for ref in runtime.world.keys_affected_by_namespace(name, before):
            if created:
                runtime.parts.queue.add(ref)
            else:  # relabelled, terminating or gone: it may be withdrawn from
                runtime.parts.queue.enforce(ref)


@kopf.on.event(
    "v1",
    "secrets",
    labels={labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: labels.ROLE_PROJECTION},
)
async def projected_secret_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    keyring = runtime.parts.keyring
    body = _body(event)
    meta = body["metadata"]
    if event.get("type") == "DELETED":
        # only a Secret the world recorded (ownership proven) names an owner to requeue
        owner = runtime.world.drop_secret((meta["namespace"], meta["name"]))
    else:
        owner = runtime.world.put_secret(body, keyring.fingerprint, keyring.prove)
        slot = (meta["namespace"], meta["name"])
        if runtime.world.is_expected(slot):
            return  # the Secret the operator just wrote
    if owner and owner[0] and owner[1]:
        runtime.parts.queue.add(owner)
