"""A minimal issuer for keykeeper's webhook contract: a team's starting point.

Run it behind TLS (the contract is HTTPS only):

    python3 issuer.py --cert server.crt --key server.key --token-file token --port 8443

It keeps its keys in memory (a real issuer keeps them where its service checks them):
``/mint`` makes a token for an ApiKey version, and returns the same one for the same
``idempotencyKey`` (keykeeper retries with it after a crash: that is the issuer's half
of exactly-once); ``/revoke`` revokes one (404 if it is already gone); ``/verify`` says
whether a token works. Standard library only.
"""

from __future__ import annotations

import argparse
import hmac
import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 64 * 1024
KEYS: dict[str, dict[str, object]] = {}  # upstream id -> {"token", "live"}
BY_IDEMPOTENCY: dict[str, str] = {}
LOCK = threading.Lock()
TOKEN = ""


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {TOKEN}".encode()):
            return self.answer(401, {"error": "unauthorized"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.answer(413, {"error": "too large"})
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.answer(400, {"error": "not JSON"})
        call = self.path.rstrip("/").rsplit("/", 1)[-1]
        if call == "mint":
            return self.mint(body)
        if call == "revoke":
            return self.revoke(body)
        if call == "verify":
            return self.verify(body)
        return self.answer(404, {"error": "no such call"})

    def mint(self, body: dict) -> None:  # type: ignore[type-arg]
        idempotency = str(body.get("idempotencyKey") or "")
        if not idempotency:
            return self.answer(400, {"error": "idempotencyKey is required"})
        with LOCK:
            upstream = BY_IDEMPOTENCY.get(idempotency)
            if upstream is None:
                upstream = "key-" + secrets.token_hex(8)
                KEYS[upstream] = {"token": "tok_" + secrets.token_urlsafe(32), "live": True}
                BY_IDEMPOTENCY[idempotency] = upstream
            token = KEYS[upstream]["token"]
        self.answer(200, {"id": upstream, "fields": {"token": token}})

    def revoke(self, body: dict) -> None:  # type: ignore[type-arg]
        with LOCK:
            key = KEYS.get(str(body.get("id") or ""))
            if key is None or not key["live"]:
                return self.answer(404, {"error": "gone"})
            key["live"] = False
        self.answer(200, {})

    def verify(self, body: dict) -> None:  # type: ignore[type-arg]
        with LOCK:
            key = KEYS.get(str(body.get("id") or ""))
            works = bool(
                key and key["live"] and key["token"] == (body.get("fields") or {}).get("token")
            )
        self.answer(200 if works else 422, {"works": works})

    def answer(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no request line in the log: the answers carry keys


def main() -> None:
    global TOKEN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument(
        "--token-file", type=Path, required=True, help="the Bearer token keykeeper sends"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args()
    TOKEN = args.token_file.read_text().strip()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"issuing on https://{args.host}:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
