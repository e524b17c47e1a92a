"""Sealing keys on the in-memory API: renewal, older values still opening, the cutoff,
the ConfigMap put back when changed, and a renewal asked for on the ConfigMap."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from keykeeper.crypto.kdf import MasterKey
from keykeeper.crypto.sealed import SealingPublicKey, open_sealed, seal, seal_v1
from keykeeper.errors import InvalidValue
from keykeeper.keys.sealing import RENEW_REQUESTED, SEALING_PUBLIC, SEALING_SECRET, SealingKeys
from keykeeper.kube.paths import configmap_path, secret_path
from keykeeper.providers.local import LocalProvider
from tests.unit.fakekube import FakeKube

NOW = int(time.time())  # when these tests seal

NS = "keykeeper-system"


class Setup:
    def __init__(self, cutoff: timedelta | None = None) -> None:
        self.kube = FakeKube()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.local = LocalProvider(MasterKey.generate())
        self.keys = self.make(cutoff)

    def make(self, cutoff: timedelta | None, v1_until: datetime | None = None) -> SealingKeys:
        return SealingKeys(
            self.kube,
            NS,
            self.local,
            timedelta(days=30),
            cutoff,
            clock=lambda: self.now,
            v1_until=v1_until,
        )

    def run(self, step: object) -> None:
        asyncio.run(step)  # type: ignore[arg-type]

    def published(self) -> dict[str, str]:
        data: dict[str, str] = self.kube.objects[configmap_path(NS, SEALING_PUBLIC)]["data"]
        return data

    def public(self) -> SealingPublicKey:
        return self.keys.pairs[self.keys.current].public


def test_renewal_keeps_older_keys_opening_and_publishes_the_newest() -> None:
    s = Setup()
    s.run(s.keys.load())
    first = s.keys.current
    sealed = [seal(s.public(), "ns", "k", b"v1", policy="p", sealed_at=NOW)]
    s.run(s.keys.check())
    assert s.keys.current == first, "not due yet: nothing renewed"
    for _ in range(2):
        s.now += timedelta(days=31)
        s.run(s.keys.check())
        sealed.append(seal(s.public(), "ns", "k", b"later", policy="p", sealed_at=NOW))
    assert len(s.keys.pairs) == 3 and s.keys.current != first
    for text in sealed:
        assert open_sealed(text, "ns", "k", "p", s.keys.usable()).value in (b"v1", b"later")
    data = s.published()
    assert data["keyId"] == s.keys.current
    assert len(data["validFingerprints"].splitlines()) == 3
    restarted = s.make(None)  # another process reads the same Secret
    s.run(restarted.load())
    assert restarted.current == s.keys.current and set(restarted.pairs) == set(s.keys.pairs)


def test_the_cutoff_refuses_values_sealed_to_keys_retired_long_ago() -> None:
    s = Setup(cutoff=timedelta(days=10))
    s.run(s.keys.load())
    old = seal(s.public(), "ns", "k", b"old", policy="p", sealed_at=NOW)
    old_id = s.keys.current
    s.now += timedelta(days=31)
    s.run(s.keys.check())  # renewed: the first key is retired now
    assert open_sealed(old, "ns", "k", "p", s.keys.usable()).value == b"old", "within the cutoff"
    s.now += timedelta(days=11)
    assert s.keys.refusal(old_id) is not None
    with pytest.raises(InvalidValue):
        open_sealed(old, "ns", "k", "p", s.keys.usable())
    assert "re-seal" in str(s.keys.refusal(old_id))
    s.now += timedelta(days=31)
    s.run(s.keys.check())  # the next renewal drops the private key for good
    secret = s.kube.objects[secret_path(NS, SEALING_SECRET)]
    assert old_id not in secret["data"]
    assert old_id not in s.published()["validFingerprints"]


def test_a_changed_or_deleted_configmap_is_put_back_from_the_secret() -> None:
    s = Setup()
    s.run(s.keys.load())
    good = dict(s.published())
    s.kube.objects[configmap_path(NS, SEALING_PUBLIC)]["data"]["publicKey"] = "AAAA"
    s.run(s.keys.check())
    assert s.published() == good
    del s.kube.objects[configmap_path(NS, SEALING_PUBLIC)]
    s.run(s.keys.check())
    assert s.published() == good


def test_a_renewal_asked_for_on_the_configmap_happens_once() -> None:
    s = Setup()
    s.run(s.keys.load())
    first = s.keys.current
    s.now += timedelta(hours=1)
    meta = s.kube.objects[configmap_path(NS, SEALING_PUBLIC)]["metadata"]
    meta.setdefault("annotations", {})[RENEW_REQUESTED] = "2026-01-01T00:30:00Z"
    s.run(s.keys.check())
    second = s.keys.current
    assert second != first
    s.run(s.keys.check())
    assert s.keys.current == second, "the same request renews once"


def test_v1_values_open_only_inside_the_window_and_under_a_policy_that_allows_them() -> None:
    s = Setup()
    s.keys = s.make(None, v1_until=s.now + timedelta(days=30))
    s.run(s.keys.load())
    old = seal_v1(s.public(), "ns", "k", b"old")
    assert s.keys.open(old, "ns", "k", "p").value == b"old", "inside the window"
    with pytest.raises(InvalidValue, match="not bound to a policy"):
        s.keys.open(old, "ns", "k", "p", refuse_unbound=True)
    s.now += timedelta(days=31)
    with pytest.raises(InvalidValue, match="not bound to a policy"):
        s.keys.open(old, "ns", "k", "p")


def test_a_seal_dated_in_the_future_is_refused() -> None:
    s = Setup()
    s.run(s.keys.load())
    now = int(s.now.timestamp())
    near = seal(s.public(), "ns", "k", b"v", policy="p", sealed_at=now + 600)
    assert s.keys.open(near, "ns", "k", "p").value == b"v", "a clock a little ahead is fine"
    far = seal(s.public(), "ns", "k", b"v", policy="p", sealed_at=now + 86400)
    with pytest.raises(InvalidValue, match="dated in the future"):
        s.keys.open(far, "ns", "k", "p")
