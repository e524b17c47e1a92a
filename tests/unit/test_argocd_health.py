"""The Argo CD health checks (deploy/argocd, Lua 5.1 as Argo CD runs it) against
statuses the reconciler and the policy controller themselves write."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest

from keykeeper.controllers.keypolicy import reconcile_policy
from keykeeper.kube.paths import apikey_path, keypolicy_path
from tests.unit.test_reconcile import BROKEN_HSM, OPERATOR_NS, Harness

HEALTH = Path(__file__).resolve().parents[2] / "deploy" / "argocd" / "keykeeper.dev"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    script = (HEALTH / kind / "health.lua").read_text()
    check = runtime.eval(f"function(obj)\n{script}\nend")
    result = check(runtime.table_from(obj, recursive=True))
    return str(result["status"]), str(result["message"])


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.namespaces("home", "a", OPERATOR_NS)
    harness.policy("p", targetNamespaces={"names": ["a"]})
    return harness


def key(h: Harness, name: str = "k") -> dict[str, Any]:
    return copy.deepcopy(h.kube.objects[apikey_path("home", name)])


def test_a_projected_key_is_healthy(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    assert health("ApiKey", key(h))[0] == "Healthy"


def test_suspended_and_revoked_keys_are_suspended(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    h.patch_key("home", "k", {"spec": {"suspended": True}})
    h.reconcile("home", "k")
    assert health("ApiKey", key(h)) == ("Suspended", "the key is suspended")
    h.patch_key("home", "k", {"spec": {"suspended": False, "revoked": True}})
    h.reconcile("home", "k")
    assert health("ApiKey", key(h))[0] == "Suspended"


def test_a_missing_policy_or_a_misconfigured_provider_is_degraded(h: Harness) -> None:
    h.apikey("home", "k", "nowhere", "a")
    h.reconcile("home", "k")
    status, message = health("ApiKey", key(h))
    assert status == "Degraded" and message.startswith("PolicyNotFound")
    h.policy("broken", targetNamespaces={"names": ["a"]}, kms=BROKEN_HSM)
    h.apikey("home", "k2", "broken", "a")
    h.reconcile("home", "k2")
    assert health("ApiKey", key(h, "k2"))[0] == "Degraded"


def test_a_kms_outage_is_progressing(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    body = key(h)
    for condition in body["status"]["conditions"]:
        if condition["type"] == "Ready":  # as the reconciler writes it during an outage
            condition.update(status="False", reason="ProviderUnavailable", message="KMS down")
    assert health("ApiKey", body) == ("Progressing", "ProviderUnavailable: KMS down")


def test_an_unobserved_generation_or_no_status_is_progressing(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    h.patch_key("home", "k", {"spec": {"projections": [{"namespace": "home"}]}})
    assert health("ApiKey", key(h))[0] == "Progressing"
    body = key(h)
    body.pop("status")
    assert health("ApiKey", body)[0] == "Progressing"


def policy(h: Harness, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {
        "apiVersion": "keykeeper.dev/v1alpha1",
        "kind": "KeyPolicy",
        "spec": spec or {"sourceNamespaces": {"selector": {}}},
    }
    h.kube.put(keypolicy_path(name), body)
    h.world.put_policy(h.kube.objects[keypolicy_path(name)])
    asyncio.run(reconcile_policy(h.kube, h.world, h.providers, name, OPERATOR_NS))
    return copy.deepcopy(h.kube.objects[keypolicy_path(name)])


def test_policies(h: Harness) -> None:
    assert health("KeyPolicy", policy(h, "good"))[0] == "Healthy"
    bad = {"sourceNamespaces": {"selector": {}}, "kms": BROKEN_HSM}
    assert health("KeyPolicy", policy(h, "bad", bad))[0] == "Degraded"
    h.world.note_kms(("home", "k"), "moving", True)
    status, message = health("KeyPolicy", policy(h, "moving"))
    assert (status, message) == ("Progressing", "1 keys still to re-wrap under the new KMS key")
