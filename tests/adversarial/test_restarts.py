"""A tenant cannot turn rollout restarts against anyone: a key that asks for a namespace
its policy does not authorize restarts nothing there, even where a workload opted in
and names the very Secret; and no request of the operator touches a workload outside
the namespaces a rotation was written into (apiserver audit log)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant, now, operator_requests, tenant
from tests.integration.conftest import Leaks
from tests.integration.test_rollout_restart import deployment, stamp

pytestmark = pytest.mark.cluster


def test_a_tenant_cannot_restart_workloads_beyond_its_policy(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    allowed, victim = kk.namespace("allowed"), kk.namespace("victim")
    policy = unique("restarts")
    kk.create(keypolicy(policy, targets={"names": [allowed]}))
    with tenant(control_plane, kk) as attacker:
        for ns in (allowed, victim):  # both opted in, both name the key and its Secret
            body = deployment("web", f"{attacker.namespace}/k:k", True, window="0")
            control_plane.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(body))
        since = now()
        projections = [{"namespace": allowed}, {"namespace": victim}]
        attacker.kk.create(apikey(attacker.namespace, "k", policy, projections=projections))
        leaks.add(wait_for(lambda: kk.value(allowed, "k"), what="projected where allowed"))
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        attacker.kk.patch_key(
            attacker.namespace,
            "k",
            {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": at}}},
        )
        wait_for(lambda: stamp(control_plane, allowed, "web") == "k=2", what="allowed restarted")
        assert stamp(control_plane, victim, "web") is None
        assert kk.secret(victim, "k") is None
        requests = operator_requests(control_plane, since=since)
        touched = {  # the index's list and watch are cluster-wide reads of opted-in ones
            r.namespace
            for r in requests
            if r.resource in ("deployments", "statefulsets", "daemonsets") and r.namespace
        }
        # the operator is shared with other tests' keys, which rotate too: every namespace
        # whose workloads it touched is one it wrote a rotated Secret into
        wrote = {r.namespace for r in requests if r.resource == "secrets" and r.verb == "update"}
        assert allowed in touched and victim not in touched
        assert touched <= wrote, f"the operator reached workloads in {touched - wrote}"


def test_a_workload_restarts_only_for_the_key_it_names(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """K13: the opt-in named only a Secret, so any source tenant whose policy reaches the
    namespace could project that name (or squat it once its owner's key was gone) and roll
    the workload at will, and its own Events named the workload. The opt-in now names the
    source key (``<namespace>/<apikey>:<secret>``); restarts are told on the workload, in
    its namespace, and only counted on the ApiKey."""
    apps = kk.namespace("apps")
    policy = unique("restarts")
    kk.create(keypolicy(policy, targets={"names": [apps]}))
    with tenant(control_plane, kk, "owner") as owner, tenant(control_plane, kk) as attacker:
        opt_in = f"{owner.namespace}/k:db-key"
        control_plane.kubectl(
            "-n",
            apps,
            "apply",
            "-f",
            "-",
            input=json.dumps(deployment("web", opt_in, True, window="0")),
        )
        # the owner's key does not exist yet: the attacker projects the very Secret name
        projections = [{"namespace": apps, "secretName": "db-key"}]
        attacker.kk.create(apikey(attacker.namespace, "k", policy, projections=projections))
        leaks.add(wait_for(lambda: kk.value(apps, "db-key"), what="the squatted name projected"))
        for version in (2, 3):
            rotate_now(attacker, "k")
            wait_for(
                lambda v=version: (
                    kk.value(apps, "db-key")  # type: ignore[misc]
                    and version_of(kk, attacker.namespace) == v
                ),
                what=f"the attacker's key at version {version}",
            )
            leaks.add(kk.value(apps, "db-key"))  # type: ignore[arg-type]
        time.sleep(1)  # a restart would have been patched by now
        assert stamp(control_plane, apps, "web") is None, "restarted for a key it did not name"
        # the owner's own key, once the name is free, does restart it
        attacker.kk.delete_key(attacker.namespace, "k")
        wait_for(lambda: kk.secret(apps, "db-key") is None, what="the squat withdrawn")
        owner.kk.create(apikey(owner.namespace, "k", policy, projections=projections))
        leaks.add(wait_for(lambda: kk.value(apps, "db-key"), what="the owner's value"))
        rotate_now(owner, "k")
        wait_for(lambda: stamp(control_plane, apps, "web") == "db-key=2", what="owner restart")
        leaks.add(kk.value(apps, "db-key"))  # type: ignore[arg-type]
        told = kk.wait_for_events(apps, "web", "RolloutRestarted")
        assert told, "the restart is told on the workload, in its namespace"
        on_key = [e.message for e in kk.events(owner.namespace, "k")]
        assert not any("web" in m for m in on_key), "the source's Events do not name it"


def test_a_rotation_lists_no_workloads_in_its_target_namespaces(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """K19: each rotation written made 3 LISTs (one per workload kind) in every target
    namespace, in the key's worker, whether or not anything there opted in: a tenant
    rotating a key with many targets made the operator list all of them, again and
    again. The opted-in workloads are now indexed by a lean watch; a rotation reads
    nothing to find them (a LIST only while that watch is not in step)."""
    targets = [kk.namespace("to") for _ in range(12)]
    policy = unique("restarts")
    kk.create(keypolicy(policy, targets={"names": targets}))
    with tenant(control_plane, kk) as attacker:
        projections = [{"namespace": ns} for ns in targets]
        attacker.kk.create(apikey(attacker.namespace, "k", policy, projections=projections))
        for ns in targets:
            leaks.add(wait_for(lambda ns=ns: kk.value(ns, "k"), what=f"projected into {ns}"))  # type: ignore[misc]
        since = now()
        for version in (2, 3):
            rotate_now(attacker, "k")
            wait_for(lambda v=version: version_of(kk, attacker.namespace) == v,  # type: ignore[misc]
                     what=f"version {version}")  # fmt: skip
            leaks.add(wait_for(lambda: kk.value(targets[-1], "k"), what="the new value"))
        rotated = {
            r.namespace
            for r in operator_requests(control_plane, since=since)
            if r.resource == "secrets" and r.verb == "update"
        }
        assert set(targets) <= rotated, "the rotation was not written into every target"
        lists = [
            r
            for r in operator_requests(control_plane, since=since)
            if r.resource in ("deployments", "statefulsets", "daemonsets") and r.namespace
        ]
        assert lists == [], f"{len(lists)} workload requests for 2 rotations x 12 targets"


def version_of(kk: Cluster, namespace: str) -> int | None:
    return ((kk.key(namespace, "k") or {}).get("status") or {}).get("currentVersion")


def rotate_now(who: Tenant, name: str) -> None:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    who.kk.patch_key(
        who.namespace,
        name,
        {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": at}}},
    )
