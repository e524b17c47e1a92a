"""A team's own issuer behind the webhook contract: JSON over HTTPS, Bearer token.

    POST {url}/mint    {"key": {namespace, name, uid}, "version": n, "idempotencyKey": "<uid>/<n>"}
                       -> 200 {"id": "...", "fields": {"<name>": "<value>"}, "expiresAt": "..."}
    POST {url}/revoke  {"key": {...}, "id": "<upstream id>"} -> 200; 404: already gone
    POST {url}/verify  {"id": "...", "fields": {...}} -> 200 works; 404 on the path: no verify

A timeout, a connection failure, 409, 429 (with Retry-After) and 5xx are transient
(``IssuerUnavailable``); any other 4xx, or an answer that breaks the contract, is the
configuration's (``IssuerRefused``). An answer is read to ``MAX_RESPONSE`` bytes at
most; unknown fields are ignored. No message holds a value, the token or the issuer's
body: they name the issuer's host, the call and the status.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from keykeeper.api import timestamps
from keykeeper.errors import InvalidValue, IssuerRefused, IssuerUnavailable
from keykeeper.issuers.base import MAX_RESPONSE, Issuer, KeyIdentity, Minted, Verified
from keykeeper.shaping import fields as key_fields

TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
RETRY_AFTER_CAP = 300.0
_UPSTREAM_ID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII: it is shown in status
TRANSIENT = frozenset({409, 429})


class WebhookIssuer(Issuer):
    issuer_id = "webhook"

    def __init__(self, url: str, token: str, ca_bundle: bytes | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise IssuerRefused("an issuer webhook is an https:// URL")
        self._url, self._host = url.rstrip("/"), parts.hostname
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._ssl = ssl.create_default_context(cadata=ca_bundle.decode() if ca_bundle else None)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # the token never reaches a log through repr()
        return f"WebhookIssuer(host={self._host!r})"

    async def mint(self, key: KeyIdentity, version: int) -> Minted:
        body = {
            "key": _identity(key),
            "version": version,
            "idempotencyKey": key.idempotency_key(version),
        }
        status, answer = await self._post("mint", body)
        if status != 200:
            raise self._refused("mint", status)
        return _minted(answer, self._host)

    async def verify(self, key: KeyIdentity, minted: Minted) -> Verified:
        try:
            text = {name: value.decode() for name, value in minted.fields.items()}
        except UnicodeDecodeError:
            return Verified.UNSUPPORTED  # the contract carries text; a binary field is not sent
        status, _ = await self._post("verify", {"id": minted.id, "fields": text})
        if status == 200:
            return Verified.WORKS
        return Verified.UNSUPPORTED if status == 404 else Verified.FAILS

    async def revoke(self, key: KeyIdentity, upstream_id: str) -> None:
        status, _ = await self._post("revoke", {"key": _identity(key), "id": upstream_id})
        if status not in (200, 404):  # 404: already gone, which is revoked
            raise self._refused("revoke", status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0.25)  # TLS transports finish closing (aiohttp's advice)

    def _refused(self, call: str, status: int) -> IssuerRefused:
        return IssuerRefused(f"issuer {self._host} refused {call} with HTTP {status}")

    async def _post(self, call: str, body: dict[str, Any]) -> tuple[int, Any]:
        """(status, parsed JSON or None) of a 2xx/4xx answer; transient ones raise."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.post(
                f"{self._url}/{call}", json=body, headers=self._headers, ssl=self._ssl
            ) as response:
                raw = await response.content.read(MAX_RESPONSE + 1)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IssuerUnavailable(
                f"issuer {self._host}: {call} failed: {type(exc).__name__}"
            ) from None
        if status >= 500 or status in TRANSIENT:
            raise IssuerUnavailable(
                f"issuer {self._host}: {call} answered HTTP {status}", _seconds(retry_after)
            )
        if len(raw) > MAX_RESPONSE:
            raise IssuerRefused(f"issuer {self._host}: {call} answered over {MAX_RESPONSE} bytes")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


def _identity(key: KeyIdentity) -> dict[str, str]:
    return {"namespace": key.namespace, "name": key.name, "uid": key.uid}


def _seconds(header: str | None) -> float | None:
    try:
        return min(max(float(header), 0.0), RETRY_AFTER_CAP) if header else None
    except ValueError:
        return None  # an HTTP-date: the caller's own backoff applies


def _minted(answer: Any, host: str) -> Minted:
    """The mint answer, held to the contract (a broken one is refused, never guessed)."""

    def broken(why: str) -> IssuerRefused:
        return IssuerRefused(f"issuer {host}: the mint answer breaks the contract: {why}")

    if not isinstance(answer, dict):
        raise broken("it is not a JSON object")
    upstream, given = answer.get("id"), answer.get("fields")
    if not isinstance(upstream, str) or not _UPSTREAM_ID.fullmatch(upstream):
        raise broken("id is not 1 to 256 printable ASCII characters")
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
        raise broken("fields is not a map of text")
    made = {str(name): value.encode() for name, value in given.items()}
    try:
        key_fields.encode(made)  # the names and count a key's fields may have
    except InvalidValue as exc:
        raise broken(str(exc)) from None
    expires = answer.get("expiresAt")
    if expires is not None:
        try:
            expires = timestamps.rfc3339_milli(timestamps.parse(str(expires)[:64]))
        except ValueError:
            raise broken("expiresAt is not an RFC 3339 time") from None
    return Minted(upstream, made, expires or "")
