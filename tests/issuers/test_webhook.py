"""The webhook issuer client against the in-repo HTTPS issuer, over real TLS: the
contract as the README states it, each failure classified, no value in any error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.fakes import tls
from devtools.fakes.issuer import FakeIssuer

from keykeeper.errors import IssuerRefused, IssuerUnavailable
from keykeeper.issuers.base import KeyIdentity, Verified
from keykeeper.issuers.webhook import WebhookIssuer

KEY = KeyIdentity("team", "stripe", "uid-1")


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIssuer]:
    issuer = FakeIssuer(tls.make(tmp_path_factory.mktemp("issuer"))).start()
    yield issuer
    issuer.stop()


@pytest.fixture
def fresh(peer: FakeIssuer) -> FakeIssuer:
    peer.state.mode, peer.state.expires_at = "", ""
    return peer


def client(peer: FakeIssuer, token: str | None = None) -> WebhookIssuer:
    return WebhookIssuer(peer.url, token or peer.state.token, peer.ca_pem)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_mint_verify_revoke_and_the_same_idempotency_key_gets_the_same_key(
    fresh: FakeIssuer,
) -> None:
    async def scenario() -> None:
        issuer = client(fresh)
        try:
            one = await issuer.mint(KEY, 1)
            again = await issuer.mint(KEY, 1)  # a retry after a lost answer
            two = await issuer.mint(KEY, 2)
            assert again.id == one.id and again.fields == one.fields
            assert two.id != one.id
            assert fresh.state.mints[KEY.idempotency_key(1)] == 2
            assert sorted(fresh.state.live_for(KEY.uid)) == sorted([one.id, two.id])
            assert await issuer.verify(KEY, two) is Verified.WORKS
            await issuer.revoke(KEY, one.id)
            await issuer.revoke(KEY, one.id)  # 404: already gone counts as revoked
            assert fresh.state.live_for(KEY.uid) == [two.id]
            assert await issuer.verify(KEY, one) is Verified.FAILS
            assert "token" in one.fields and "iss_" not in repr(one)
        finally:
            await issuer.close()

    run(scenario())


def test_expires_at_and_unknown_fields(fresh: FakeIssuer) -> None:
    fresh.state.expires_at = "2027-01-01T00:00:00Z"
    minted = run(_mint(client(fresh), 3))
    assert minted.expires_at == "2027-01-01T00:00:00.000Z"
    fresh.state.expires_at = "next tuesday"
    with pytest.raises(IssuerRefused, match="expiresAt is not an RFC 3339 time"):
        run(_mint(client(fresh), 30))


@pytest.mark.parametrize(
    ("mode", "error", "said"),
    [
        ("down", IssuerUnavailable, "HTTP 503"),
        ("limited", IssuerUnavailable, "HTTP 429"),
        ("refuse", IssuerRefused, "HTTP 403"),
        ("garbage", IssuerRefused, "breaks the contract"),
    ],
)
def test_each_failure_is_classified_and_says_no_value(
    fresh: FakeIssuer, mode: str, error: type[Exception], said: str
) -> None:
    fresh.state.mode = mode
    with pytest.raises(error) as failed:
        run(_mint(client(fresh), 4))
    assert said in str(failed.value)
    assert fresh.state.token not in str(failed.value)
    if mode == "limited":
        assert failed.value.retry_after == 2.0  # type: ignore[attr-defined]


def test_a_wrong_token_and_a_wrong_ca_are_refused(fresh: FakeIssuer, tmp_path: Path) -> None:
    with pytest.raises(IssuerRefused, match="HTTP 401"):
        run(_mint(client(fresh, token="wrong"), 5))
    other_ca = tls.make(tmp_path / "other").ca_file.read_bytes()
    with pytest.raises(IssuerUnavailable, match="mint failed"):
        run(_mint(WebhookIssuer(fresh.url, fresh.state.token, other_ca), 5))
    with pytest.raises(IssuerRefused, match="https"):
        WebhookIssuer(fresh.url.replace("https:", "http:"), "t")


def test_a_hung_issuer_is_given_up_on(fresh: FakeIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    from keykeeper.issuers import webhook

    monkeypatch.setattr(webhook, "TIMEOUT", aiohttp.ClientTimeout(total=1, connect=1))
    fresh.state.mode, fresh.state.delay = "slow", 2.5  # answers long after the client gave up

    async def scenario() -> None:
        with pytest.raises(IssuerUnavailable, match="TimeoutError"):
            await _mint(client(fresh), 6)
        await asyncio.sleep(2.5)  # the late answer ends the connection's TLS shutdown

    try:
        run(scenario())
    finally:
        fresh.state.delay = 0.0


async def _mint(issuer: WebhookIssuer, version: int):  # type: ignore[no-untyped-def]
    try:
        return await issuer.mint(KEY, version)
    finally:
        await issuer.close()
