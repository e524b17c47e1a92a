"""What the world keeps per key is bounded: bodies as compact JSON without
managedFields, parsed specs in a bounded cache (an evicted one is parsed again)."""

from __future__ import annotations

from typing import Any

import pytest

from keykeeper.kube import specs as specs_module
from keykeeper.kube.world import World


def key(n: int, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "keykeeper.dev/v1alpha1",
        "kind": "ApiKey",
        "metadata": {
            "name": f"k{n}",
            "namespace": "home",
            "uid": f"uid-{n}",
            "generation": generation,
            "resourceVersion": str(n),
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"policy": "p", "source": {"generate": {}}, "projections": [{"namespace": "a"}]},
    }


POLICY = {"metadata": {"name": "p"}, "spec": {"sourceNamespaces": {"names": ["home"]}}}


def admitting() -> World:
    world = World()
    world.put_policy(POLICY)
    return world


def test_bodies_come_back_whole_but_without_managed_fields() -> None:
    world = admitting()
    ref = world.put_key(key(1))
    found = world.body_of(ref)
    assert found is not None
    assert "managedFields" not in found["metadata"]
    assert found["spec"] == key(1)["spec"] and found["metadata"]["uid"] == "uid-1"
    found["spec"]["policy"] = "changed"  # a caller's copy, never the world's
    assert world.body_of(ref)["spec"]["policy"] == "p"  # type: ignore[index]
    assert isinstance(world.bodies[ref], bytes)


def test_parsed_specs_are_bounded_and_an_evicted_one_is_parsed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(specs_module, "SPEC_CACHE", 4)
    world = admitting()
    for n in range(10):
        world.put_key(key(n))
    assert len(world.specs) == 4
    assert world.specs.refs() == {("home", f"k{n}") for n in range(6, 10)}
    assert world.spec_of(key(0)).policy == "p"  # evicted: parsed again
    assert ("home", "k0") in world.specs and len(world.specs) == 4
    assert world.targets.named[("home", "k0")] == frozenset({"a"}), "the index keeps every key"


def crafted(n: int) -> dict[str, Any]:
    body = key(n)
    selector = {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["v" * 63] * 32}]}
    body["spec"]["projections"] = [
        {"namespaceSelector": selector, "secretName": f"s{i}"} for i in range(8)
    ]
    return body


def test_a_key_no_policy_admits_is_kept_as_its_name_and_policy_only() -> None:
    """K3: nothing of a key's spec is kept while its policy is missing or refuses its
    namespace; once a policy admits it, what the world held is indexed again."""
    world = World()
    ref = world.put_key(crafted(1))
    assert world.body_of(ref) is None and ref not in world.specs
    assert world.targets.selectors.get(ref) is None and world.targets.named[ref] == frozenset()
    assert world.keys_of_policy("p") == {ref}, "its policy's arrival still finds it"
    refusing = {"metadata": {"name": "p"}, "spec": {"sourceNamespaces": {"names": ["other"]}}}
    world.put_policy(refusing)
    world.put_key(crafted(1))
    assert world.body_of(ref) is None and ref not in world.specs

    world.put_policy(POLICY)  # admits it now: the next watch event keeps it
    world.put_key(crafted(1))
    assert world.body_of(ref) is not None and len(world.targets.selectors[ref]) == 8
    world.drop_policy("p")  # gone again: forgotten at once, not at its next event
    assert world.body_of(ref) is None and world.targets.selectors.get(ref) is None


def test_a_namespace_relabel_that_refuses_its_keys_forgets_them() -> None:
    world = World()
    world.put_namespace({"metadata": {"name": "home", "labels": {"team": "a"}}})
    world.put_policy(
        {
            "metadata": {"name": "p"},
            "spec": {"sourceNamespaces": {"selector": {"matchLabels": {"team": "a"}}}},
        }
    )
    ref = world.put_key(crafted(1))
    assert world.body_of(ref) is not None
    world.put_namespace({"metadata": {"name": "home", "labels": {"team": "b"}}})
    assert world.body_of(ref) is None and world.targets.selectors.get(ref) is None
