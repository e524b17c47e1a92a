"""An HTTPS issuer that implements keykeeper's webhook contract, for tests to drive.

It keeps what a real token service keeps: every key it minted and whether it is live,
and the key each idempotency key made (the same idempotency key gets the same key back:
its side of exactly-once). It counts mints per idempotency key and live keys per ApiKey,
so a test can say "never more than two live upstream keys". ``mode`` makes it fail the
way issuers do: ``down`` (503), ``limited`` (429 with Retry-After), ``hang`` (answers
after the client gave up), ``refuse`` (403), ``slow`` (answers after ``delay`` s),
``garbage`` (a mint answer that breaks the contract).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ssl import PROTOCOL_TLS_SERVER, SSLContext
from typing import Any

from devtools.fakes.tls import ServerCert


@dataclass
class Upstream:
    id: str
    key_uid: str
    fields: dict[str, str]
    live: bool = True


@dataclass
class State:
    token: str
    keys: dict[str, Upstream] = field(default_factory=dict)
    by_idempotency: dict[str, str] = field(default_factory=dict)
    mints: dict[str, int] = field(default_factory=dict)  # idempotency key -> mint calls
    minted_at: dict[str, float] = field(default_factory=dict)  # upstream id -> when
    calls: dict[str, int] = field(default_factory=dict)
    mode: str = ""
    delay: float = 0.0
    expires_at: str = ""
    expires_in: float = 0.0  # each key minted expires this long after its mint (0: not said)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def live_for(self, key_uid: str) -> list[str]:
        with self.lock:
            return [k.id for k in self.keys.values() if k.key_uid == key_uid and k.live]

    def works(self, upstream_id: str, given: dict[str, str]) -> bool:
        with self.lock:
            key = self.keys.get(upstream_id)
            return key is not None and key.live and key.fields == given


class FakeIssuer:
    def __init__(self, cert: ServerCert, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.state = State(token or secrets.token_urlsafe(24))
        state = self.state

        class Handler(_Handler):
            issuer = state

        self._server = ThreadingHTTPServer((host, 0), Handler)
        context = SSLContext(PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_file, cert.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}/v1"
        self.ca_pem = cert.ca_file.read_bytes()

    def start(self) -> FakeIssuer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    issuer: State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        state, call = self.issuer, self.path.rsplit("/", 1)[-1]
        with state.lock:
            state.calls[call] = state.calls.get(call, 0) + 1
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            return self._answer(401, {"error": "unauthorized"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if state.mode == "slow":
            time.sleep(state.delay)
        failing = {"down": (503, None), "limited": (429, "2"), "refuse": (403, None)}
        if state.mode == "hang":
            time.sleep(30)
        if state.mode in failing:
            status, retry = failing[state.mode]
            return self._answer(status, {"error": state.mode}, retry)
        handler = {"mint": self._mint, "revoke": self._revoke, "verify": self._verify}.get(call)
        if handler is None:
            return self._answer(404, {"error": "no such call"})
        handler(body)

    def _mint(self, body: dict[str, Any]) -> None:
        state, idem = self.issuer, str(body.get("idempotencyKey", ""))
        if state.mode == "garbage":
            return self._answer(200, {"id": "", "fields": ["not", "a", "map"]})
        with state.lock:
            state.mints[idem] = state.mints.get(idem, 0) + 1
            known = state.by_idempotency.get(idem)
            if known is None:
                made = Upstream(
                    f"key-{secrets.token_hex(6)}",
                    str(body["key"]["uid"]),
                    {"token": "iss_" + secrets.token_urlsafe(30)},
                )
                state.keys[made.id] = made
                state.by_idempotency[idem] = known = made.id
            minted = state.keys[known]
        answer: dict[str, Any] = {"id": minted.id, "fields": minted.fields, "extra": "ignored"}
        if state.expires_at:
            answer["expiresAt"] = state.expires_at
        elif state.expires_in:
            made_at = state.minted_at.setdefault(minted.id, time.time())
            moment = datetime.fromtimestamp(made_at + state.expires_in, UTC)
            answer["expiresAt"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._answer(200, answer)

    def _revoke(self, body: dict[str, Any]) -> None:
        state = self.issuer
        with state.lock:
            key = state.keys.get(str(body.get("id", "")))
            if key is None or not key.live:
                return self._answer(404, {"error": "gone"})
            key.live = False
        self._answer(200, {})

    def _verify(self, body: dict[str, Any]) -> None:
        works = self.issuer.works(str(body.get("id", "")), dict(body.get("fields") or {}))
        self._answer(200 if works else 422, {"works": works})

    def _answer(self, status: int, body: Any, retry_after: str | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(raw)
