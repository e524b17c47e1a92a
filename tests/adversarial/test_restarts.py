"""A tenant cannot turn rollout restarts against anyone: a key that asks for a namespace
its policy does not authorize restarts nothing there, even where a workload opted in
and names the very Secret; and no request of the operator touches a workload outside
the namespaces a rotation was written into (apiserver audit log)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import now, operator_requests, tenant
from tests.integration.conftest import Leaks
from tests.integration.test_rollout_restart import deployment, stamp

pytestmark = pytest.mark.cluster


def test_a_tenant_cannot_restart_workloads_beyond_its_policy(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    allowed, victim = kk.namespace("allowed"), kk.namespace("victim")
    policy = unique("restarts")
    kk.create(keypolicy(policy, targets={"names": [allowed]}))
    for ns in (allowed, victim):  # both opted in, both name the key's Secret
        control_plane.kubectl(
            "-n", ns, "apply", "-f", "-", input=json.dumps(deployment("web", "k", True))
        )
    with tenant(control_plane, kk) as attacker:
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
        touched = {
            r.namespace
            for r in requests
            if r.resource in ("deployments", "statefulsets", "daemonsets")
        }
        # the operator is shared with other tests' keys, which rotate too: every namespace
        # whose workloads it touched is one it wrote a rotated Secret into
        wrote = {r.namespace for r in requests if r.resource == "secrets" and r.verb == "update"}
        assert allowed in touched and victim not in touched
        assert touched <= wrote, f"the operator reached workloads in {touched - wrote}"
