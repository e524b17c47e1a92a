"""The projection matrix, against the real apiserver with the operator as a separate
process under its shipped RBAC. Every test ends with a scan for leaked values."""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, projection_states, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


def projected(kk: Cluster, namespace: str, name: str, key: str = "api-key") -> bytes:
    value: bytes = wait_for(lambda: kk.value(namespace, name, key), what=f"{namespace}/{name}")
    return value


def gone(kk: Cluster, namespace: str, name: str) -> None:
    wait_for(lambda: kk.secret(namespace, name) is None, what=f"{namespace}/{name} withdrawn")


def states(kk: Cluster, namespace: str, name: str, expected: dict[tuple[str, str], str]) -> None:
    wait_for(
        lambda: projection_states(kk.key(namespace, name)) == expected,
        what=f"projection states {expected}",
    )


def test_allowed_denied_own_and_selected(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    tier = unique("tier")
    home = kk.namespace("home")
    named = kk.namespace("named")
    selected = kk.namespace("sel", {"tier": tier})
    denied = kk.namespace("denied")
    policy = unique("pol")
    kk.create(
        keypolicy(policy, targets={"names": [named], "selector": {"matchLabels": {"tier": tier}}})
    )
    kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[
                {"namespace": home},
                {"namespace": named, "secretName": "renamed", "key": "token"},
                {"namespaceSelector": {"matchLabels": {"tier": tier}}},
                {"namespace": denied},
            ],
        )
    )
    value = projected(kk, home, "k")
    leaks.add(value)
    assert projected(kk, named, "renamed", "token") == value
    assert projected(kk, selected, "k") == value
    states(
        kk,
        home,
        "k",
        {
            (home, "k"): "Projected",
            (named, "renamed"): "Projected",
            (selected, "k"): "Projected",
            (denied, "k"): "Denied/NotAuthorizedByPolicy",
        },
    )
    assert kk.secret(denied, "k") is None
    secret = kk.secret(named, "renamed")
    assert secret is not None
    assert secret.type == "Opaque"
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "keykeeper"
    assert secret.metadata.labels["keykeeper.dev/apikey-namespace"] == home
    assert secret.metadata.annotations["keykeeper.dev/version"] == "1"
    assert secret.metadata.annotations["keykeeper.dev/fingerprint"].startswith("hmac-sha256:")
    body = kk.key(home, "k")
    assert condition(body, "Ready")["status"] == "True"
    assert condition(body, "Projected")["reason"] == "PartiallyProjected"
    # Events follow the status write that reports them
    kk.wait_for_events(home, "k", "Created", "Encrypted", "Projected", "ProjectionDenied")
    ready = wait_for(
        lambda: condition(kk.policy(policy), "Ready").get("status") == "True" and kk.policy(policy),
        what="policy Ready",
    )
    assert ready["status"]["governedKeys"] == 1
    assert "local" in condition(ready, "Ready")["message"]


def test_own_namespace_can_be_disallowed(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home, other = kk.namespace("home"), kk.namespace("other")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [other], "allowOwnNamespace": False}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}, {"namespace": other}]))
    leaks.add(projected(kk, other, "k"))
    states(kk, home, "k", {(home, "k"): "Denied/NotAuthorizedByPolicy", (other, "k"): "Projected"})


def test_source_namespace_must_be_admitted(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": ["somewhere-else"]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    states(kk, home, "k", {(home, "k"): "Denied/SourceNamespaceNotAllowed"})
    assert kk.secret(home, "k") is None


def test_relabelled_and_new_namespaces(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    tier = unique("tier")
    home = kk.namespace("home")
    first = kk.namespace("first", {"tier": tier})
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"selector": {"matchLabels": {"tier": tier}}}))
    kk.create(
        apikey(
            home, "k", policy, projections=[{"namespaceSelector": {"matchLabels": {"app": "x"}}}]
        )
    )
    kk.label_namespace(first, {"app": "x"})
    leaks.add(projected(kk, first, "k"))
    # a namespace created later that matches both selectors receives the key
    later = kk.namespace("later", {"tier": tier, "app": "x"})
    projected(kk, later, "k")
    # relabelled out of the policy's selector: withdrawn at once
    kk.label_namespace(first, {"tier": None})
    gone(kk, first, "k")
    # and back in
    kk.label_namespace(first, {"tier": tier})
    projected(kk, first, "k")
    # relabelled out of the key's own request: withdrawn, no longer requested
    kk.label_namespace(later, {"app": None})
    gone(kk, later, "k")
    kk.wait_for_events(home, "k", "ProjectionWithdrawn")


def test_terminating_namespace(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    doomed = kk.namespace("doomed")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [doomed]}))
    # a Secret with a finalizer keeps the namespace Terminating (there is no namespace
    # controller here, so it stays Terminating: exactly the state under test)
    kk.create(apikey(home, "k", policy, projections=[{"namespace": doomed}]))
    leaks.add(projected(kk, doomed, "k"))
    kk.core.delete_namespace(doomed)
    gone(kk, doomed, "k")
    # one public reason for "not there" and "not authorized": status is no oracle
    states(kk, home, "k", {(doomed, "k"): "Withdrawn/NotAuthorizedByPolicy"})


def test_drift_is_repaired(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    value = projected(kk, home, "k")
    leaks.add(value)
    kk.core.patch_namespaced_secret(
        "k", home, {"data": {"api-key": "dGFtcGVyZWQ=", "extra": "eA=="}}
    )
    wait_for(
        lambda: kk.value(home, "k") == value and "extra" not in (kk.secret(home, "k").data or {}),
        what="edited Secret restored",
    )
    kk.core.delete_namespaced_secret("k", home)
    assert projected(kk, home, "k") == value
    wait_for(
        lambda: any("restored" in actions(e).get("Projected", "") for e in kk.events(home, "k")),
        what="a restored Event",
    )


def test_a_secret_it_does_not_manage_is_never_touched(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    kk.put_secret(home, "taken", {"api-key": b"somebody else's secret"})
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home, "secretName": "taken"}]))
    states(kk, home, "k", {(home, "taken"): "Denied/SecretNameTaken"})
    assert kk.value(home, "taken") == b"somebody else's secret"
    wait_for(
        lambda: any(
            "SecretNameTaken" in actions(e).get("ProjectionDenied", "")
            for e in kk.events(home, "k")
        ),
        what="SecretNameTaken event",
    )
    kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="key deleted")
    assert kk.value(home, "taken") == b"somebody else's secret"


def test_policy_tightened_and_loosened(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home, target = kk.namespace("home"), kk.namespace("target")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [target]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": target}]))
    leaks.add(projected(kk, target, "k"))
    kk.patch_policy(policy, {"spec": {"targetNamespaces": {"names": []}}})
    gone(kk, target, "k")
    states(kk, home, "k", {(target, "k"): "Withdrawn/NotAuthorizedByPolicy"})
    kk.patch_policy(policy, {"spec": {"targetNamespaces": {"names": [target]}}})
    projected(kk, target, "k")
    # a policy that disappears authorizes nothing: default deny, at once
    kk.delete_policy(policy)
    gone(kk, target, "k")
    states(kk, home, "k", {(target, "k"): "Withdrawn/PolicyNotFound"})


def test_missing_policy_then_created(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("late")
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "PolicyNotFound",
        what="PolicyNotFound condition",
    )
    assert kk.secret(home, "k") is None
    kk.create(keypolicy(policy))
    leaks.add(projected(kk, home, "k"))
    wait_for(lambda: condition(kk.key(home, "k"), "Ready").get("status") == "True", what="Ready")


def test_deletion_withdraws_and_erases(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home, target = kk.namespace("home"), kk.namespace("target")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [target]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}, {"namespace": target}]))
    leaks.add(projected(kk, target, "k"))
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    assert kk.secret("keykeeper-system", f"ak-{uid}") is not None
    kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="ApiKey gone (finalizer released)")
    assert kk.secret(home, "k") is None
    assert kk.secret(target, "k") is None
    assert kk.secret("keykeeper-system", f"ak-{uid}") is None
    actions = [r["action"] for r in operator.audit_records() if r["uid"] == uid]
    assert "Erased" in actions
    assert "ProjectionWithdrawn" in actions
