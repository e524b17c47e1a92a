"""A policy that names another KMS key strands nothing: old envelopes keep opening under
the key the store says made them, and are re-wrapped under the new one."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keykeeper.core import store
from keykeeper.kube.credentials import credentials_reader
from keykeeper.providers import Registry
from keykeeper.providers.cache import ProviderCache
from tests.unit import memkms
from tests.unit.test_reconcile import OPERATOR_NS, Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    own = Registry()
    own.register("local", "keykeeper.providers.local")
    own.register("aws", "tests.unit.memkms")
    memkms.MemKms.keys.clear()
    memkms.MemKms.down.clear()
    memkms.MemKms.calls.clear()
    harness = Harness(tmp_path)
    providers = ProviderCache(own, harness.keyring.local, credentials_reader(harness.kube))
    harness.providers = harness.reconciler.providers = harness.reconciler.keeper.providers = (
        providers
    )
    harness.namespaces("home", "a", "b", OPERATOR_NS)
    harness.policy("p", targetNamespaces={"names": ["a", "b"]}, kms=aws("kek-A"))
    yield harness
    harness.providers.close()


def aws(key: str) -> dict[str, object]:
    return {"provider": "aws", "keyRef": key}


def stored(h: Harness) -> store.Store:
    uid = h.kube.objects["/apis/keykeeper.dev/v1alpha1/namespaces/home/apikeys/k"]["metadata"][
        "uid"
    ]
    return store.parse(h.kube.objects[f"/api/v1/namespaces/{OPERATOR_NS}/secrets/ak-{uid}"])


def value(h: Harness, ns: str) -> bytes:
    secret = h.secret(ns, "k")
    assert secret is not None
    return base64.b64decode(secret["data"]["api-key"])


def test_a_new_kms_key_rewraps_every_version_and_changes_no_value(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    before = value(h, "a")
    assert {v.kms_key_id for v in stored(h).versions} == {"kek-A"}
    h.policy("p", targetNamespaces={"names": ["a", "b"]}, kms=aws("kek-B"))
    h.reconcile("home", "k")
    after = stored(h)
    assert {v.kms_key_id for v in after.versions} == {"kek-B"}
    assert after.kms is not None and after.kms.key_ref == "kek-B"
    assert value(h, "a") == before, "re-wrapping changes no value and writes no Secret"
    assert h.world.keys_under_previous_kms("p") == 0
    reasons = [e[1] for e in h.kube.requests if e[0] == "POST" and "events" in e[1]]
    assert reasons, "a Rewrapped Event is posted"
    h.reconcile("home", "k")
    assert h.kube.writes() == [], "once re-wrapped, nothing more to do"


def test_while_the_new_key_is_down_old_versions_still_open_and_nothing_is_withdrawn(
    h: Harness,
) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    before = value(h, "a")
    memkms.MemKms.down.add("kek-B")
    h.policy("p", targetNamespaces={"names": ["a", "b"]}, kms=aws("kek-B"))
    h.patch_key("home", "k", {"spec": {"projections": [{"namespace": "a"}, {"namespace": "b"}]}})
    retry = h.reconcile("home", "k")
    assert value(h, "a") == before and value(h, "b") == before, (
        "the new target is written from the version opened under the old key"
    )
    assert {v.kms_key_id for v in stored(h).versions} == {"kek-A"}
    assert h.world.keys_under_previous_kms("p") == 1
    ready = next(c for c in h.status("home", "k")["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ProviderUnavailable")
    assert retry is not None
    memkms.MemKms.down.clear()
    time.sleep(1.1)  # the guard's breaker holds calls to a failed KMS for a second
    h.reconcile("home", "k")
    assert {v.kms_key_id for v in stored(h).versions} == {"kek-B"}
    assert h.world.keys_under_previous_kms("p") == 0


def test_a_revoked_key_is_not_rewrapped(h: Harness) -> None:
    h.apikey("home", "k", "p", "a")
    h.reconcile("home", "k")
    h.patch_key("home", "k", {"spec": {"revoked": True}})
    h.reconcile("home", "k")
    h.policy("p", targetNamespaces={"names": ["a", "b"]}, kms=aws("kek-B"))
    memkms.MemKms.calls.clear()
    h.reconcile("home", "k")
    assert ("wrap", "kek-B") not in memkms.MemKms.calls
    assert h.secret("a", "k") is None
