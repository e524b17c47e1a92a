"""Hostile input refused at every depth: names, durations, sealed ids, patterns, proofs."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from datetime import timedelta

import pytest

from keykeeper.api import names
from keykeeper.api.durations import parse_duration
from keykeeper.api.models import ValueConstraints, parse_apikey_spec, parse_policy_spec
from keykeeper.audit.events import BURST, REFILL_SECONDS, EventSink
from keykeeper.core.projection import proven_owner
from keykeeper.core.values import check
from keykeeper.crypto.kdf import MasterKey, Purpose, ownership_proof
from keykeeper.crypto.sealed import SealingKeyPair, key_id_of
from keykeeper.errors import InvalidName, InvalidValue, SpecError
from keykeeper.kube.paths import apikey_path, check_identity, secret_path

HOSTILE = [
    "../../kube-system/secrets/x",
    "..",
    ".",
    "a/b",
    "%2e%2e",
    "..%2F",
    "x?watch=1",
    "x#y",
    "UPPER",
    "vi\u0441tim",
    "nul\x00",
    "",
    "a" * 254,
    "-leading",
    "trailing-",
    "a..b",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_path_builders_refuse_what_is_not_a_name(name: str) -> None:
    with pytest.raises(InvalidName):
        secret_path("ns", name)
    with pytest.raises(InvalidName):
        secret_path(name if name else "", "x") if name else names.namespace(name)
    with pytest.raises(InvalidName):
        apikey_path("ns", name) if name else names.object_name(name)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_models_refuse_what_the_crd_refuses(name: str) -> None:
    with pytest.raises(SpecError):
        parse_apikey_spec({"policy": "p", "source": {"secretRef": {"name": name}}})
    with pytest.raises(SpecError):
        parse_apikey_spec(
            {"policy": "p", "source": {"generate": {}}, "projections": [{"namespace": name}]}
        )
    with pytest.raises(SpecError):
        parse_policy_spec(
            {
                "sourceNamespaces": {"names": ["a"]},
                "kms": {"credentialsSecretRef": {"name": name}},
            }
        )


def _selectors(count: int, values: int) -> list[dict[str, object]]:
    expression = {"key": "k", "operator": "In", "values": [f"v{n}" for n in range(values)]}
    return [{"namespaceSelector": {"matchExpressions": [expression]}}] * count


@pytest.mark.parametrize(
    ("projections", "refused"),
    [
        (_selectors(8, 32), None),
        (_selectors(9, 1), "at most 8 projections by namespaceSelector"),
        (_selectors(2, 129), "at most 256 selector values"),
    ],
)
def test_the_models_bound_selectors_as_the_crd_does(
    projections: list[dict[str, object]], refused: str | None
) -> None:
    spec = {"policy": "p", "source": {"generate": {}}, "projections": projections}
    if refused is None:
        parse_apikey_spec(spec)
        return
    with pytest.raises(SpecError, match=refused):
        parse_apikey_spec(spec)


def test_names_that_are_names_pass() -> None:
    assert (
        secret_path("team-a", "stripe.api-key")
        == "/api/v1/namespaces/team-a/secrets/stripe.api-key"
    )
    assert names.data_key("api-key.previous") == "api-key.previous"


def test_the_returned_objects_identity_is_checked() -> None:
    body = {"metadata": {"namespace": "kube-system", "name": "x"}}
    with pytest.raises(Exception, match="returned"):
        check_identity(body, "team-a", "x")


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999999999w", "9999w", "36501d", "0s", "", "1y", "x" * 40],
)
def test_durations_are_bounded(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero|100 years"):  # never OverflowError
        parse_duration(text)


def test_a_century_is_the_longest_duration() -> None:
    assert parse_duration("36500d") == timedelta(days=36500)


def sealed_with_key_id(key_id: bytes) -> str:
    raw = bytes([1, len(key_id)]) + key_id + b"\x00" * 1200
    return "kk-sealed-v1:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "key_id",
    [b"\x1b[31mred\x1b[0m0000", b"abcdefabcdefabc\n", b"ABCDEFABCDEFABCD", b"short", b"z" * 16],
)
def test_sealed_key_ids_are_strict(key_id: bytes) -> None:
    with pytest.raises(InvalidValue, match="malformed sealing key id"):
        key_id_of(sealed_with_key_id(key_id))


def test_a_real_sealing_key_id_passes() -> None:
    pair = SealingKeyPair.generate()
    assert key_id_of(sealed_with_key_id(pair.key_id.encode())) == pair.key_id


def test_patterns_run_in_linear_time() -> None:
    """With Python's re this pattern takes hours on 40 bytes; RE2 answers at once."""
    evil = ValueConstraints(pattern="^([A-Za-z0-9]+_?)+$")
    with pytest.raises(InvalidValue, match="does not match"):
        check(b"a" * 40 + b"!", evil)


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)a", r"(?<!a)b"])
def test_patterns_re2_cannot_run_are_refused_with_the_policy(pattern: str) -> None:
    with pytest.raises(SpecError, match="RE2"):
        parse_policy_spec({"sourceNamespaces": {"names": ["a"]}, "value": {"pattern": pattern}})


def test_forged_ownership_is_not_proof() -> None:
    key = MasterKey(b"m" * 32).subkey(Purpose.OWNERSHIP)

    def prove(*parts: str) -> str:
        return ownership_proof(key, *parts)

    labels = {
        "app.kubernetes.io/managed-by": "keykeeper",
        "keykeeper.dev/role": "projection",
        "keykeeper.dev/apikey-namespace": "victim",
        "keykeeper.dev/apikey-name": "stripe",
    }

    def body(ns: str, proof: str) -> dict[str, object]:
        return {
            "metadata": {
                "namespace": ns,
                "name": "stripe",
                "labels": labels,
                "annotations": {
                    "keykeeper.dev/apikey-uid": "u1",
                    "keykeeper.dev/owner-proof": proof,
                },
            }
        }

    real = prove("u1", "victim", "stripe", "victim", "stripe")
    assert proven_owner(body("victim", real), prove) == (("victim", "stripe"), "u1")
    assert proven_owner(body("attacker", real), prove) is None  # a proof copied elsewhere
    assert proven_owner(body("victim", "hmac-sha256:" + "0" * 64), prove) is None
    assert proven_owner({"metadata": {"labels": labels}}, prove) is None


def test_events_are_rate_limited_per_object() -> None:
    asyncio.run(_events_are_rate_limited_per_object())


async def _events_are_rate_limited_per_object() -> None:
    posted: list[str] = []

    class FakeKube:
        async def create(self, path: str, body: dict[str, object]) -> dict[str, object]:
            posted.append(path)
            return body

    now = [0.0]
    sink = EventSink(FakeKube(), "test", clock=lambda: now[0])  # type: ignore[arg-type]
    flapping = {"kind": "ApiKey", "metadata": {"namespace": "t", "name": "k", "uid": "u1"}}
    quiet = {"kind": "ApiKey", "metadata": {"namespace": "t", "name": "q", "uid": "u2"}}
    for _ in range(BURST * 4):
        await sink.emit(flapping, "Warning", "ProjectionDenied", "again")
    await sink.emit(quiet, "Normal", "Projected", "once")
    assert len(posted) == BURST + 1  # the flapping key is capped, the quiet one is not
    now[0] += REFILL_SECONDS * 2
    await sink.emit(flapping, "Warning", "ProjectionDenied", "later")
    assert len(posted) == BURST + 2


def test_the_operator_process_cannot_dump_core() -> None:
    code = "from keykeeper.runtime.hardening import harden_process, is_hardened; harden_process(); print(is_hardened())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_relabel_requeues_only_the_keys_it_can_affect() -> None:
    from keykeeper.kube.world import World

    world = World()
    world.put_policy(
        {
            "metadata": {"name": "p"},
            "spec": {"sourceNamespaces": {"selector": {}}, "targetNamespaces": {"selector": {}}},
        }
    )
    world.put_namespace({"metadata": {"name": "target", "labels": {"tier": "dev"}}})

    def key(ns: str, name: str, projections: list[dict[str, object]]) -> None:
        world.put_key(
            {
                "metadata": {"namespace": ns, "name": name},
                "spec": {"policy": "p", "source": {"generate": {}}, "projections": projections},
            }
        )

    key("a", "wants-prod", [{"namespaceSelector": {"matchLabels": {"tier": "prod"}}}])
    key("a", "wants-dev", [{"namespaceSelector": {"matchLabels": {"tier": "dev"}}}])
    key("a", "wants-qa", [{"namespaceSelector": {"matchLabels": {"tier": "qa"}}}])
    key("a", "names-it", [{"namespace": "target"}])
    key("target", "lives-there", [])
    key("b", "elsewhere", [{"namespace": "b"}])
    before = world.put_namespace({"metadata": {"name": "target", "labels": {"tier": "prod"}}})
    assert before is not None
    affected = {name for _, name in world.keys_affected_by_namespace("target", before)}
    assert affected == {"wants-prod", "wants-dev", "names-it", "lives-there"}


def test_a_secret_whose_proof_is_stripped_requeues_its_key() -> None:
    from keykeeper.kube.world import World

    key = MasterKey(b"m" * 32).subkey(Purpose.OWNERSHIP)

    def prove(*parts: str) -> str:
        return ownership_proof(key, *parts)

    labels = {
        "app.kubernetes.io/managed-by": "keykeeper",
        "keykeeper.dev/role": "projection",
        "keykeeper.dev/apikey-namespace": "home",
        "keykeeper.dev/apikey-name": "k",
    }
    proof = prove("u1", "home", "k", "t", "k")
    annotations = {"keykeeper.dev/apikey-uid": "u1", "keykeeper.dev/owner-proof": proof}
    world = World()
    meta = {"namespace": "t", "name": "k", "labels": labels, "annotations": annotations}
    assert world.put_secret({"metadata": meta}, lambda v: "fp", prove) == ("home", "k")
    stripped = {**meta, "annotations": {"keykeeper.dev/apikey-uid": "u1"}}
    assert world.put_secret({"metadata": stripped}, lambda v: "fp", prove) == ("home", "k")
    assert ("t", "k") not in world.projected
    assert world.put_secret({"metadata": stripped}, lambda v: "fp", prove) is None


def test_a_namespace_coming_or_going_wakes_only_keys_that_select_it() -> None:
    """K4: a namespace that did not exist (or no longer does) was matched as one with no
    labels, so every key with a ``NotIn``, ``DoesNotExist`` or empty selector was
    requeued, on the event loop, for each namespace created or deleted."""
    from keykeeper.kube.world import World

    world = World()
    world.put_policy(
        {
            "metadata": {"name": "p"},
            "spec": {"sourceNamespaces": {"selector": {}}, "targetNamespaces": {"selector": {}}},
        }
    )
    for name, selector in [
        ("not-in", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}),
        ("unlabelled", {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
        ("prod", {"matchLabels": {"tier": "prod"}}),
    ]:
        projections = [{"namespaceSelector": selector}]
        world.put_key(
            {
                "metadata": {"namespace": "a", "name": name},
                "spec": {"policy": "p", "source": {"generate": {}}, "projections": projections},
            }
        )
    created = world.put_namespace({"metadata": {"name": "new", "labels": {"tier": "prod"}}})
    assert created is not None
    affected = {name for _, name in world.keys_affected_by_namespace("new", created)}
    assert affected == {"prod", "not-in"}, "the new namespace's labels, not an empty set"
    gone = world.drop_namespace("new")
    assert gone is not None
    affected = {name for _, name in world.keys_affected_by_namespace("new", gone)}
    assert affected == {"prod", "not-in"}, "the deleted namespace's last labels only"
