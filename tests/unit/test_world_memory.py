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


def test_bodies_come_back_whole_but_without_managed_fields() -> None:
    world = World()
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
    world = World()
    for n in range(10):
        world.put_key(key(n))
    assert len(world.specs) == 4
    assert world.specs.refs() == {("home", f"k{n}") for n in range(6, 10)}
    assert world.spec_of(key(0)).policy == "p"  # evicted: parsed again
    assert ("home", "k0") in world.specs and len(world.specs) == 4
    assert world.targets.named[("home", "k0")] == frozenset({"a"}), "the index keeps every key"
