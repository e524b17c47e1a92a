"""The store's side of issued keys (#25): upstream ids and states kept, never lost to the
history bound, the mint intent and the issuer recorded, revocation marked before it is
asked of the issuer."""

from __future__ import annotations

from dataclasses import replace

from keykeeper.api.issuers import IssuerSpec, UpstreamState
from keykeeper.controllers.apikey.issuing import revoking_all, unverified
from keykeeper.core import store

LIVE, REVOKING, REVOKED = UpstreamState.LIVE, UpstreamState.REVOKING, UpstreamState.REVOKED
ISSUER = IssuerSpec.model_validate(
    {"webhook": {"url": "https://keys.example/v1", "credentialsSecretRef": {"name": "t"}}}
)


def version(number: int, upstream: UpstreamState | None = LIVE) -> store.Version:
    return store.Version(
        number, "2026-12-06T00:00:00.000Z", f"fp{number}", "kek", "local",
        fields=("token",), upstream_id=f"up-{number}", upstream=upstream,
    )  # fmt: skip


def test_a_rotation_marks_a_destroyed_versions_live_upstream_key_revoking() -> None:
    stored = store.Store("uid").with_version(version(1), b"e1")
    stored = stored.rotated(version(2), b"e2", "2026-12-07T00:00:00Z")  # 1 is Previous
    stored = stored.rotated(version(3), b"e3", "2026-12-08T00:00:00Z")  # 1 destroyed
    states = {v.version: (v.state, v.upstream) for v in stored.versions}
    assert states[1] == (store.VersionState.DESTROYED, REVOKING)
    assert states[2] == (store.VersionState.PREVIOUS, LIVE)
    assert [v.version for v in stored.upstream(REVOKING)] == [1]


def test_the_history_bound_never_drops_an_unrevoked_upstream_key() -> None:
    stored = store.Store("uid").with_version(version(1, REVOKING), b"e")
    for number in range(2, 15):
        stored = stored.rotated(version(number, REVOKED if number < 13 else LIVE), b"e", None)
    kept = [v.version for v in stored.versions]
    assert 1 in kept and len(kept) == store.HISTORY + 1


def test_the_intent_the_issuer_and_the_override_survive_a_write() -> None:
    stored = replace(store.Store("uid").with_version(version(1), b"e"), minting=2, issuer=ISSUER)
    body = store.render(stored, "keykeeper-system", "team", "k")
    body["metadata"]["annotations"][store.ABANDON] = "true"  # the platform's override
    parsed = store.parse(body)
    assert parsed.minting == 2 and parsed.issuer == ISSUER and parsed.abandoned
    assert parsed.versions[0].upstream_id == "up-1" and parsed.versions[0].upstream is LIVE
    assert "up-1" in str(parsed.versions[0].status())  # ids are shown, values never


def test_revocation_marks_every_live_key_and_a_failed_verify_burns_its_version() -> None:
    stored = store.Store("uid").with_version(version(1), b"e1")
    stored = stored.rotated(version(2), b"e2", "2026-12-07T00:00:00Z")
    assert {v.upstream for v in revoking_all(stored).versions} == {REVOKING}
    burnt = unverified(replace(stored, minting=3), version(3))
    assert burnt.minting is None and burnt.next_version == 4
    assert burnt.versions[-1].state is store.VersionState.DESTROYED
    assert burnt.versions[-1].upstream is REVOKING


def test_an_issuers_expiry_brings_the_rotation_forward_but_never_into_a_loop() -> None:
    from datetime import UTC, datetime, timedelta

    from keykeeper.core.expiry import before_expiry

    made = datetime(2026, 12, 6, tzinfo=UTC)
    grace, day = timedelta(days=1), timedelta(days=1)

    def due(expires_in: timedelta | None, period: timedelta | None) -> timedelta | None:
        expiry = made + expires_in if expires_in else None
        found = before_expiry(made + period if period else None, made, expiry, grace)
        return found - made if found else None

    assert due(None, 30 * day) == 30 * day  # no expiry: the period
    assert due(10 * day, 30 * day) == 9 * day  # a grace period before the expiry
    assert due(60 * day, 30 * day) == 30 * day  # the period comes first
    assert due(10 * day, None) == 9 * day  # an expiry and no period
    assert due(timedelta(hours=12), 30 * day) == timedelta(hours=6)  # half its life, no loop
