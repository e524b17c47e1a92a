"""Revoked values stay dead: the tombstone Secret, and the rollback rule (K5)."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest

from keykeeper.core.store import Version, VersionState
from keykeeper.core.values import rollback
from keykeeper.errors import IntegrityError, RevokedValue
from keykeeper.keys import revocations
from keykeeper.keys.revocations import REVOCATIONS_SECRET, Revocations
from keykeeper.kube.paths import secret_path
from tests.unit.fakekube import FakeKube

NS = "keykeeper-system"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def setup() -> tuple[FakeKube, Clock, Revocations]:
    kube, clock = FakeKube(), Clock()
    return kube, clock, Revocations(kube, NS, clock)


def test_a_recorded_tombstone_is_refused_and_others_pass() -> None:
    _, _, dead = setup()
    asyncio.run(dead.check("fp-a"))  # nothing recorded yet: no Secret, no refusal
    asyncio.run(dead.record(["fp-a", "fp-b"]))
    for fp in ("fp-a", "fp-b"):
        with pytest.raises(RevokedValue, match="never served again"):
            asyncio.run(dead.check(fp))
    asyncio.run(dead.check("fp-c"))


def test_recording_again_keeps_the_first_date_and_adds_the_new() -> None:
    kube, clock, dead = setup()
    asyncio.run(dead.record(["fp-a"]))
    clock.now += timedelta(days=10)
    asyncio.run(dead.record(["fp-a", "fp-b"]))
    stored = revocations._entries(kube.objects[secret_path(NS, REVOCATIONS_SECRET)])
    assert stored == {"fp-a": "2026-01-01T00:00:00Z", "fp-b": "2026-01-11T00:00:00Z"}


def test_entries_past_the_retention_are_forgotten() -> None:
    _, clock, dead = setup()
    asyncio.run(dead.record(["old"]))
    clock.now += revocations.RETENTION + timedelta(days=1)
    asyncio.run(dead.record(["new"]))
    asyncio.run(dead.check("old"))
    with pytest.raises(RevokedValue):
        asyncio.run(dead.check("new"))


def test_the_newest_entries_are_kept_when_there_are_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(revocations, "MAX_ENTRIES", 2)
    _, clock, dead = setup()
    for fp in ("a", "b", "c"):
        asyncio.run(dead.record([fp]))
        clock.now += timedelta(seconds=1)
    asyncio.run(dead.check("a"))
    for fp in ("b", "c"):
        with pytest.raises(RevokedValue):
            asyncio.run(dead.check(fp))


def test_an_unreadable_secret_refuses_rather_than_forgets() -> None:
    kube, _, dead = setup()
    asyncio.run(dead.record(["fp-a"]))
    body = kube.objects[secret_path(NS, REVOCATIONS_SECRET)]
    body["data"]["tombstones.json"] = base64.b64encode(b"[1, 2]").decode()
    with pytest.raises(IntegrityError):
        asyncio.run(dead.check("fp-z"))
    with pytest.raises(IntegrityError):
        asyncio.run(dead.record(["fp-z"]))


def _v(n: int, state: VersionState, tombstone: str, sealed_at: int | None = None) -> Version:
    return Version(
        n, "2026-01-01T00:00:00Z", "fp", "k", "local", state, None, None, tombstone, sealed_at
    )


HISTORY = (
    _v(1, VersionState.DESTROYED, "t1", 100),
    _v(2, VersionState.PREVIOUS, "t2", 200),
    _v(3, VersionState.CURRENT, "t3", 300),
)


@pytest.mark.parametrize(
    ("tombstone", "sealed_at", "refusal"),
    [
        pytest.param("t1", 400, "had this value before", id="a-destroyed-value"),
        pytest.param("t2", 400, "had this value before", id="the-previous-value"),
        pytest.param("t3", 300, None, id="the-current-value-again"),
        pytest.param("t4", 250, "sealed earlier", id="an-older-seal"),
        pytest.param("t4", 300, None, id="a-seal-as-new"),
        pytest.param("t4", None, None, id="imported-or-v1"),
        pytest.param("t4", 301, None, id="newer"),
    ],
)
def test_rollback(tombstone: str, sealed_at: int | None, refusal: str | None) -> None:
    found = rollback(HISTORY, tombstone, sealed_at)
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in str(found)
