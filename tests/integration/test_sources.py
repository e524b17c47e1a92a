"""Each source type, value constraints, and what the apiserver itself refuses."""

from __future__ import annotations

import json
import re
import time

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, public_key, unique
from devtools.operator import Operator, wait_for
from kubernetes.client.rest import ApiException

from keykeeper.crypto.sealed import seal
from tests.integration.conftest import Leaks

NOW = int(time.time())  # when these tests seal

pytestmark = pytest.mark.cluster


def projected(kk: Cluster, namespace: str, name: str) -> bytes:
    value: bytes = wait_for(lambda: kk.value(namespace, name), what=f"{namespace}/{name}")
    return value


def test_generate_uses_the_policy_generator_and_overrides(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, generator={"length": 32, "prefix": "kk_", "alphabet": "hex"}))
    kk.create(apikey(home, "policy-gen", policy, projections=[{"namespace": home}]))
    kk.create(
        apikey(
            home,
            "own-gen",
            policy,
            projections=[{"namespace": home}],
            # an override may only strengthen the policy's generator (K16): as long, and
            # an alphabet with more bits a character
            source={"generate": {"length": 32, "prefix": "sk_test_", "alphabet": "base62"}},
        )
    )
    one, two = projected(kk, home, "policy-gen"), projected(kk, home, "own-gen")
    leaks.add(one)
    leaks.add(two)
    assert re.fullmatch(rb"kk_[0-9a-f]{32}", one)
    assert re.fullmatch(rb"sk_test_[A-Za-z0-9]{32}", two)


def test_secret_ref_import_and_delete_after(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(
        keypolicy(policy, value={"minLength": 20, "pattern": "^sk_(live|test)_[A-Za-z0-9]{24,}$"})
    )
    value = b"sk_test_" + b"A1b2C3d4" * 4
    leaks.add(value)
    kk.put_secret(home, "import-me", {"token": value}, importable_by="moved")
    kk.put_secret(home, "keep-me", {"api-key": value}, importable_by="other, copied")
    kk.create(
        apikey(
            home,
            "moved",
            policy,
            projections=[{"namespace": home}],
            source={"secretRef": {"name": "import-me", "key": "token", "deleteAfterImport": True}},
        )
    )
    kk.create(
        apikey(
            home,
            "copied",
            policy,
            projections=[{"namespace": home}],
            source={"secretRef": {"name": "keep-me"}},
        )
    )
    assert projected(kk, home, "moved") == value
    assert projected(kk, home, "copied") == value
    wait_for(lambda: kk.secret(home, "import-me") is None, what="source deleted after import")
    assert kk.value(home, "keep-me") == value


def test_secret_ref_missing_then_created(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home}],
            source={"secretRef": {"name": "later"}},
        )
    )
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "SourceNotFound",
        what="SourceNotFound",
    )
    found = kk.wait_for_events(home, "k", "SourceNotFound")
    assert any("SourceNotFound" in actions(e) and e.type == "Warning" for e in found)
    value = b"imported-later-" + b"x" * 16
    leaks.add(value)
    kk.put_secret(home, "later", {"api-key": value}, importable_by="k")
    kk.patch_key(home, "k", {"metadata": {"annotations": {"poke": "1"}}})  # or wait for the retry
    assert wait_for(lambda: kk.value(home, "k"), timeout=45) == value


def test_values_breaking_the_policy_are_conditioned_not_projected(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, value={"minLength": 20, "pattern": "^sk_live_[A-Za-z0-9]+$"}))
    short, wrong = b"sk_live_short", b"pk_live_" + b"z" * 30
    leaks.add(short)
    leaks.add(wrong)
    kk.put_secret(home, "short", {"api-key": short}, importable_by="short")
    kk.put_secret(home, "wrong", {"api-key": wrong}, importable_by="wrong")
    for name in ("short", "wrong"):
        kk.create(
            apikey(
                home,
                name,
                policy,
                projections=[{"namespace": home, "secretName": f"{name}-out"}],
                source={"secretRef": {"name": name}},
            )
        )
    for name, why in (("short", "at least 20"), ("wrong", "does not match")):
        ready = wait_for(
            lambda n=name: (
                condition(kk.key(home, n), "Ready").get("reason") == "InvalidValue"
                and condition(kk.key(home, n), "Ready")
            ),
            what=f"{name} InvalidValue",
        )
        assert why in ready["message"]
        assert kk.secret(home, f"{name}-out") is None
        found = kk.wait_for_events(home, name, "InvalidValue")
        assert any("InvalidValue" in actions(e) and e.type == "Warning" for e in found)


def test_sealed_values_open_only_where_they_were_sealed_for(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    key = wait_for(lambda: public_key(control_plane), what="published sealing key")
    value = b"sk_live_sealed_" + b"q" * 20
    leaks.add(value)
    kk.create(
        apikey(
            home,
            "right",
            policy,
            projections=[{"namespace": home}],
            source={"sealed": seal(key, home, "right", value, policy=policy, sealed_at=NOW)},
        )
    )
    kk.create(
        apikey(
            home,
            "wrong",
            policy,
            projections=[{"namespace": home}],
            source={"sealed": seal(key, home, "right", value, policy=policy, sealed_at=NOW)},
        )
    )
    assert projected(kk, home, "right") == value
    ready = wait_for(
        lambda: (
            condition(kk.key(home, "wrong"), "Ready").get("reason") == "InvalidValue"
            and condition(kk.key(home, "wrong"), "Ready")
        ),
        what="sealed for another name",
    )
    assert "another namespace or name" in ready["message"]
    assert kk.secret(home, "wrong") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"policy": "p", "source": {"generate": {}, "secretRef": {"name": "s"}}},
            "exactly one of generate, sealed, secretRef or issue",
            id="two-sources",
        ),
        pytest.param({"policy": "p", "source": {}}, "exactly one of generate", id="no-source"),
        pytest.param(
            {
                "policy": "p",
                "source": {"generate": {}},
                "projections": [{"namespace": "a", "namespaceSelector": {}}],
            },
            "a namespace or a namespaceSelector, not both",
            id="projection-both",
        ),
        pytest.param(
            {"policy": "p", "source": {"generate": {}}, "projections": [{}]},
            "a namespace or a namespaceSelector, not both",
            id="projection-neither",
        ),
        pytest.param(
            {"policy": "p", "source": {"sealed": "not-a-sealed-value"}},
            "spec.source.sealed",
            id="sealed-format",
        ),
        pytest.param({"source": {"generate": {}}}, "spec.policy: Required value", id="no-policy"),
    ],
)
def test_the_apiserver_rejects_invalid_apikeys(
    operator: Operator, kk: Cluster, spec: dict[str, object], message: str
) -> None:
    home = kk.namespace("bad")
    body = {
        "apiVersion": "keykeeper.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": "bad", "namespace": home},
        "spec": spec,
    }
    with pytest.raises(ApiException) as info:
        kk.create(body)
    assert info.value.status == 422
    assert message in json.loads(info.value.body)["message"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"sourceNamespaces": {}}, "needs names or a selector", id="no-sources"),
        pytest.param(
            {"sourceNamespaces": {"names": ["a"]}, "rotation": {"period": "90 days"}},
            "spec.rotation.period",
            id="bad-duration",
        ),
        pytest.param(
            {"sourceNamespaces": {"names": ["a"]}, "kms": {"provider": "vault"}},
            "spec.kms.provider",
            id="unknown-provider",
        ),
        pytest.param(
            {"sourceNamespaces": {"names": ["a"]}, "generator": {"length": 4}},
            "spec.generator.length",
            id="short-generator",
        ),
    ],
)
def test_the_apiserver_rejects_invalid_policies(
    operator: Operator, kk: Cluster, spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ApiException) as info:
        kk.create(
            {
                "apiVersion": "keykeeper.dev/v1alpha1",
                "kind": "KeyPolicy",
                "metadata": {"name": unique("bad")},
                "spec": spec,
            }
        )
    assert info.value.status == 422
    assert message in json.loads(info.value.body)["message"]


def test_revoked_cannot_be_unset_and_policy_is_immutable(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(home, "k", policy, revoked=True))
    for patch, message in (
        ({"spec": {"revoked": False}}, "revoked cannot be unset"),
        ({"spec": {"policy": "other"}}, "policy is immutable"),
    ):
        with pytest.raises(ApiException) as info:
            kk.patch_key(home, "k", patch)
        assert info.value.status == 422
        assert message in json.loads(info.value.body)["message"]


def test_a_semantically_invalid_policy_is_conditioned(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, value={"pattern": "([unclosed"}))
    wait_for(
        lambda: condition(kk.policy(policy), "Ready").get("reason") == "InvalidSpec",
        what="policy InvalidSpec",
    )
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    ready = wait_for(
        lambda: (
            condition(kk.key(home, "k"), "Ready").get("reason") == "PolicyNotFound"
            and condition(kk.key(home, "k"), "Ready")
        ),
        what="key PolicyNotFound",
    )
    assert "regular expression" in ready["message"]
    kk.patch_policy(policy, {"spec": {"value": {"pattern": "^kk_.*$"}}})
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("status") == "True", what="recovered"
    )
    leaks.add(projected(kk, home, "k"))
