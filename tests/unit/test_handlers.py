"""The kopf handlers' routing rules: which watch event queues which key or policy.

The handlers are thin, but their rules decide what gets reconciled at all: an echo of
the operator's own write must queue nothing (or every write would loop), a forged
Secret must cost nothing, and a change that can withdraw a projection (a namespace's
labels, a policy's spec, a tampered Secret) must queue every key it can affect. Each
row drives the real handler functions with a real Runtime's parts; only the two work
queues are recorders.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from keykeeper.api import labels
from keykeeper.core import projection
from keykeeper.core.authz import Target
from keykeeper.crypto.kdf import MasterKey
from keykeeper.kube.echoes import SecretSignature
from keykeeper.runtime import handlers
from keykeeper.runtime.assembly import assemble
from keykeeper.runtime.process import Runtime
from keykeeper.runtime.settings import Settings
from tests.unit.fakekube import FakeKube


class Recorder:
    def __init__(self) -> None:
        self.added: list[Any] = []
        self.enforced: list[Any] = []  # also in the enforcement lane

    def add(self, item: Any, delay: float = 0.0) -> None:
        self.added.append(item)

    def enforce(self, item: Any) -> None:
        self.added.append(item)
        self.enforced.append(item)


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        kube = FakeKube()
        self.runtime = Runtime(Settings(audit_log=tmp_path / "a.jsonl"), kube)  # type: ignore[arg-type]
        parts = assemble(
            self.runtime.settings,
            kube,
            self.runtime.world,
            MasterKey(b"k" * 32),  # type: ignore[arg-type]
        )
        self.keys, self.policies = Recorder(), Recorder()
        self.runtime._parts = dataclasses.replace(
            parts,
            queue=self.keys,
            policy_queue=self.policies,  # type: ignore[arg-type]
        )
        self.memo = SimpleNamespace(runtime=self.runtime)

    def send(self, handler: Any, type_: str, body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        self.keys.added.clear()
        self.keys.enforced.clear()
        self.policies.added.clear()
        asyncio.run(handler(event={"type": type_, "object": body}, memo=self.memo))
        return list(self.keys.added), list(self.policies.added)


def apikey(name: str = "k", generation: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "team",
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
            **meta,
        },
        "spec": {
            "policy": "p",
            "source": {"generate": {}},
            "projections": [{"namespaceSelector": {"matchLabels": {"tier": "prod"}}}],
        },
    }


def policy(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "generation": 1}, "spec": spec, "status": status or {}}


POLICY = {"sourceNamespaces": {"names": ["team"]}, "targetNamespaces": {"names": ["api"]}}


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_new_key_queues_itself_and_its_policys_count(h: Harness) -> None:
    assert h.send(handlers.apikey_event, "ADDED", apikey()) == ([("team", "k")], ["p"])


def test_the_echo_of_the_operators_own_write_queues_nothing(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.runtime.world.echoes.saw_key(("team", "k"), apikey())  # what the reconcile saw
    echo = apikey(resourceVersion="99", finalizers=[])
    echo["status"] = {"phase": "Active"}  # its own status write
    assert h.send(handlers.apikey_event, "MODIFIED", echo) == ([], [])


def test_a_new_generation_queues_the_key_but_not_its_policy(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.runtime.world.echoes.saw_key(("team", "k"), apikey())
    assert h.send(handlers.apikey_event, "MODIFIED", apikey(generation=2)) == ([("team", "k")], [])


def test_only_a_change_that_may_withdraw_takes_the_enforcement_lane(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.runtime.world.echoes.saw_key(("team", "k"), apikey())
    requested = apikey(annotations={"keykeeper.dev/rotate-requested-at": "2026-12-03T00:00:00Z"})
    h.send(handlers.apikey_event, "MODIFIED", requested)  # a rotation request: no withdrawal
    assert (h.keys.added, h.keys.enforced) == ([("team", "k")], [])
    h.send(handlers.apikey_event, "MODIFIED", apikey(generation=2))  # revoked, say
    assert h.keys.enforced == [("team", "k")]
    h.send(handlers.apikey_event, "MODIFIED", apikey(generation=2, deletionTimestamp="now"))
    assert h.keys.enforced == [("team", "k")]
    h.send(handlers.apikey_event, "DELETED", apikey())
    assert h.keys.enforced == [("team", "k")]
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.send(handlers.keypolicy_event, "DELETED", policy(POLICY))
    assert h.keys.enforced == [("team", "k")]


def test_a_deleted_key_is_forgotten_and_queued_with_its_policy(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    assert h.send(handlers.apikey_event, "DELETED", apikey()) == ([("team", "k")], ["p"])
    assert ("team", "k") not in h.runtime.world.key_policy


def test_a_policys_status_change_reaches_no_key(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    assert h.send(handlers.keypolicy_event, "MODIFIED", policy(POLICY, {"governedKeys": 1})) == (
        [],
        ["p"],
    )


def test_a_policys_spec_change_queues_every_key_under_it(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey("k1"))
    h.send(handlers.apikey_event, "ADDED", apikey("k2"))
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    narrower = {**POLICY, "targetNamespaces": {"names": []}}
    keys, policies = h.send(handlers.keypolicy_event, "MODIFIED", policy(narrower))
    assert sorted(keys) == [("team", "k1"), ("team", "k2")] and policies == ["p"]


def test_a_deleted_policy_queues_its_keys_to_withdraw(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    assert h.send(handlers.keypolicy_event, "DELETED", policy(POLICY)) == ([("team", "k")], [])


@pytest.mark.parametrize(
    ("before", "after", "queued"),
    [
        pytest.param({}, {"tier": "prod"}, True, id="labels-now-match-a-selector"),
        pytest.param({"tier": "prod"}, {}, True, id="labels-no-longer-match"),
        pytest.param({"tier": "dev"}, {"tier": "dev", "x": "y"}, False, id="no-selector-cares"),
        pytest.param({"tier": "prod"}, {"tier": "prod"}, False, id="nothing-changed"),
    ],
)
def test_a_namespaces_labels_queue_the_keys_whose_selectors_they_touch(
    h: Harness, before: dict[str, str], after: dict[str, str], queued: bool
) -> None:
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.send(handlers.namespace_event, "ADDED", {"metadata": {"name": "api", "labels": before}})
    keys, _ = h.send(
        handlers.namespace_event, "MODIFIED", {"metadata": {"name": "api", "labels": after}}
    )
    assert keys == ([("team", "k")] if queued else [])


def test_a_selector_is_not_evaluated_for_a_namespace_its_policy_cannot_target(
    h: Harness,
) -> None:
    """K4: a key's selectors expand only inside its policy's targets, so a namespace the
    policy does not reach wakes none of its keys, whatever their selectors say."""
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))  # targets: api only
    h.send(handlers.apikey_event, "ADDED", apikey())
    keys, _ = h.send(
        handlers.namespace_event,
        "ADDED",
        {"metadata": {"name": "other", "labels": {"tier": "prod"}}},
    )
    assert keys == []
    keys, _ = h.send(
        handlers.namespace_event, "ADDED", {"metadata": {"name": "api", "labels": {"tier": "prod"}}}
    )
    assert keys == [("team", "k")]


def test_a_namespace_going_away_queues_the_keys_projecting_into_it(h: Harness) -> None:
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    h.send(handlers.apikey_event, "ADDED", apikey())
    h.send(
        handlers.namespace_event, "ADDED", {"metadata": {"name": "api", "labels": {"tier": "prod"}}}
    )
    keys, _ = h.send(handlers.namespace_event, "DELETED", {"metadata": {"name": "api"}})
    assert keys == [("team", "k")]
    assert h.keys.enforced == [("team", "k")], "its Secrets are withdrawn first"


def test_a_new_namespace_can_only_add_targets_so_it_skips_the_enforcement_lane(
    h: Harness,
) -> None:
    h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))
    h.send(handlers.apikey_event, "ADDED", apikey())
    created = {"metadata": {"name": "api", "labels": {"tier": "prod"}}}
    assert h.send(handlers.namespace_event, "ADDED", created)[0] == [("team", "k")]
    assert h.keys.enforced == []
    relabelled = {"metadata": {"name": "api", "labels": {"tier": "dev"}}}
    h.send(handlers.namespace_event, "MODIFIED", relabelled)
    assert h.keys.enforced == [("team", "k")]


def projected(h: Harness, value: bytes = b"v") -> dict[str, Any]:
    desired = projection.Desired(
        Target("api", "k", "api-key"), 1, h.runtime.parts.keyring.fingerprint(value)
    )
    body = projection.render(desired, ("team", "k"), "uid-k", h.runtime.parts.keyring, value, None)
    body["metadata"]["uid"] = "secret-uid"
    return body


def test_a_secret_with_forged_labels_costs_nothing(h: Harness) -> None:
    forged = projected(h)
    forged["metadata"]["annotations"][labels.OWNER_PROOF] = "0" * 64
    assert h.send(handlers.projected_secret_event, "ADDED", forged) == ([], [])
    assert h.runtime.world.projected == {}


def test_the_secret_the_operator_just_wrote_queues_nothing(h: Harness) -> None:
    mine = projected(h)
    fingerprint = h.runtime.parts.keyring.fingerprint(b"v")
    h.runtime.world.echoes.expect_secret(
        ("api", "k"),
        SecretSignature(("team", "k"), "uid-k", "1", (("api-key", fingerprint),), "Opaque"),
    )
    assert h.send(handlers.projected_secret_event, "ADDED", mine) == ([], [])


@pytest.mark.parametrize("type_", ["MODIFIED", "DELETED"])
def test_a_secret_changed_or_deleted_by_someone_else_queues_its_owner(
    h: Harness, type_: str
) -> None:
    h.send(handlers.projected_secret_event, "ADDED", projected(h))
    tampered = projected(h, b"someone else's value")
    assert h.send(handlers.projected_secret_event, type_, tampered) == ([("team", "k")], [])


def test_a_secret_whose_proof_was_stripped_queues_the_key_it_belonged_to(h: Harness) -> None:
    h.send(handlers.projected_secret_event, "ADDED", projected(h))
    stripped = projected(h)
    del stripped["metadata"]["annotations"][labels.OWNER_PROOF]
    assert h.send(handlers.projected_secret_event, "MODIFIED", stripped) == ([("team", "k")], [])


def test_a_new_policy_only_grants_so_its_keys_skip_the_enforcement_lane(h: Harness) -> None:
    h.send(handlers.apikey_event, "ADDED", apikey())
    assert h.send(handlers.keypolicy_event, "ADDED", policy(POLICY))[0] == [("team", "k")]
    assert h.keys.enforced == []
    narrowed = {**POLICY, "targetNamespaces": {"names": ["other"]}}
    h.send(handlers.keypolicy_event, "MODIFIED", policy(narrowed))
    assert h.keys.enforced == [("team", "k")]
