"""Finding K12, the status half — a replica that read a key before it changed (or
stopped leading while it reconciled) overwrote the status written since.

The status patch now carries the resourceVersion the reconcile read, so the apiserver
refuses it as stale. Here the operator's own reporter, with the operator's own
ServiceAccount over a real connection, writes a status computed from a key as it was
before another writer (standing in for the replica that leads now) wrote its status:
the apiserver answers 409, the newer status stands, and the key is read again.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, api_client, apikey, keypolicy, unique
from devtools.operator import NAMESPACE, Operator, wait_for
from kubernetes import client

from keykeeper.audit.events import EventSink
from keykeeper.controllers.apikey.reporting import Reporter
from keykeeper.controllers.apikey.run import Run
from keykeeper.core import store
from keykeeper.kube.client import Kube
from keykeeper.kube.world import World
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def test_a_status_computed_from_a_stale_key_does_not_overwrite_a_newer_one(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="projected"))
    stale = wait_for(
        lambda: (kk.key(home, "k") or {}).get("status", {}).get("versions") and kk.key(home, "k"),
        what="the key's status",
    )
    custom = client.CustomObjectsApi(kk.core.api_client)
    newer = custom.patch_namespaced_custom_object_status(  # the replica that leads now
        "keykeeper.dev", "v1alpha1", home, "apikeys", "k",
        {"status": {"phase": "Suspended"}},
    )  # fmt: skip
    assert newer["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
    world = World()
    world.put_key(copy.deepcopy(stale))  # what the stale replica saw
    identity = control_plane.service_account(NAMESPACE, "keykeeper", 600)

    async def report_from_the_stale_body() -> Run:
        kube = Kube(api_client(identity))
        try:
            reporter = Reporter(kube, world, EventSink(kube, "stale"), lambda: datetime.now(UTC))
            run = Run((home, "k"), copy.deepcopy(stale))  # no projections: a status to write
            await reporter.report(run, store.Store(run.uid), None)
            return run
        finally:
            await kube.close()

    run = asyncio.run(report_from_the_stale_body())
    assert kk.key(home, "k")["status"] == newer["status"], "a stale status overwrote a newer one"  # type: ignore[index]
    assert run.retry is not None, "the key is not looked at again"
    assert world.body_of((home, "k")) is None, "the next reconcile would not read the key again"
