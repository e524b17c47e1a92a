"""The one place that talks to the Kubernetes API (besides kopf's watches).

A thin async layer: the official client only loads the configuration; requests go
over one aiohttp session per event loop (no thread per call), return plain dicts, and
map API errors onto the few exceptions of ``errors`` that the reconciler understands.
Paths are built in ``kube.paths``. The benchmarks count its requests from the
apiserver's audit log.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import aiohttp
from kubernetes import client, config

from keykeeper.errors import (
    ApiError,
    ApiUnavailable,
    Conflict,
    Forbidden,
    KeykeeperError,
    NotFound,
)
from keykeeper.kube.paths import check_identity, secret_path
from keykeeper.types import Body

__all__ = ["ApiUnavailable", "Conflict", "Forbidden", "Kube", "NotFound"]

CONNECTIONS = 32  # kept-alive connections to the apiserver, at most
Page = list[Body]  # one page of a list (``Kube.list`` shadows the builtin in the class)
LIST_PAGE = 100  # items a start-up list asks for at once (each page handled before the next)
THROTTLE_TRIES = 5  # a 429 is waited out this many times, then it is ApiUnavailable
THROTTLE_WAIT_CAP = 10.0  # seconds; a longer Retry-After is not trusted
AUTH_REFRESH = 60.0  # seconds a bearer token is used before the configuration is asked again


def load_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod (and no kubeconfig or context is named),
    else the kubeconfig (``KUBECONFIG`` / ``~/.kube/config`` by default) and context."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None or context is not None:
            raise config.ConfigException("a kubeconfig or context was named")
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    return client.ApiClient(configuration)


def _ssl_context(cfg: client.Configuration) -> ssl.SSLContext | bool:
    """The TLS settings of a kubeconfig: its CA, its client certificate, or no checks
    only where the kubeconfig itself says so (insecure-skip-tls-verify)."""
    if not cfg.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return context


def _retry_after(header: str | None) -> float:
    """Seconds to wait after a 429: the apiserver's ``Retry-After``, bounded."""
    try:
        seconds = float(header) if header else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), THROTTLE_WAIT_CAP)


class Kube:
    """Raw JSON over the client's connection settings (TLS, client certs, bearer tokens).

    The official client is used for its configuration loading only: its generated
    call layer changes shape between releases, and keykeeper needs plain dicts. Calls
    go over one aiohttp session per event loop: kept-alive connections, no thread per
    call. A 429 from the apiserver's priority and fairness is waited out as its
    ``Retry-After`` says (a few times), so a large batch slows down instead of failing.
    """

    def __init__(self, api: client.ApiClient, *, connections: int = CONNECTIONS) -> None:
        self.api = api
        cfg = api.configuration
        self._host = cfg.host.rstrip("/")
        self._config = cfg
        self._connections = connections
        self._ssl = _ssl_context(cfg)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.throttled = 0  # 429 answers waited out
        # called before every write (not reads): raises to refuse it (leader fencing)
        self.write_guard: Callable[[str, str], None] | None = None
        self._auth_header: dict[str, str] = {}
        self._auth_at: float | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=30),
                json_serialize=json.dumps,
            )
            self._loop = loop
        return self._session

    def _auth(self) -> dict[str, str]:
        """The bearer token header, if the kubeconfig has one: asked of the client's
        configuration (which re-reads a rotated in-cluster token) once a minute, not per
        request (its refresh hook rebuilds the configuration each time it is asked)."""
        now = time.monotonic()
        if self._auth_at is None or now - self._auth_at > AUTH_REFRESH:
            token = self._config.auth_settings().get("BearerToken")
            self._auth_header = (
                {str(token["key"]): str(token["value"])} if token and token.get("value") else {}
            )
            self._auth_at = now
        return self._auth_header

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        headers = {"Accept": "application/json", "Content-Type": content_type, **self._auth()}
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(THROTTLE_TRIES):
            if attempt and method != "GET":
                self._fence(method, path)  # the Lease may have been lost while waiting (K12)
            try:
                async with self._client().request(
                    method, url, data=data, headers=headers
                ) as response:
                    status, text = response.status, await response.read()
                    wait = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            if status != 429 or attempt == THROTTLE_TRIES - 1:
                break
            self.throttled += 1
            await asyncio.sleep(wait)
        if status >= 400:
            raise _translate(status, text, method, path)
        result: Body = json.loads(text) if text else {}
        return result

    async def watch(
        self, path: str, query: dict[str, str], seconds: int = 240
    ) -> AsyncGenerator[Body, None]:
        """The events of one watch request (``{"type", "object"}``), until the server ends
        it after ``seconds``; a broken stream raises ``ApiUnavailable``."""
        headers = {"Accept": "application/json", **self._auth()}
        url = f"{self._host}{path}?" + urllib.parse.urlencode(
            {**query, "watch": "1", "timeoutSeconds": str(seconds)}
        )
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=seconds + 30)
        try:
            async with self._client().get(url, headers=headers, timeout=timeout) as response:
                if response.status >= 400:
                    raise _translate(response.status, await response.read(), "WATCH", path)
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiUnavailable(f"WATCH {path}: {type(exc).__name__}: {exc}") from None

    # -- convenience ---------------------------------------------------------------------------

    async def get(self, path: str) -> Body:
        return await self.call("GET", path)

    async def get_or_none(self, path: str) -> Body | None:
        try:
            return await self.get(path)
        except NotFound:
            return None

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        """A Secret by name, or None; the answer's identity is checked."""
        found = await self.get_or_none(secret_path(namespace, name))
        return None if found is None else check_identity(found, namespace, name)

    async def list(self, path: str, label_selector: str = "") -> list[Body]:
        return [item async for page in self.pages(path, label_selector) for item in page]

    async def pages(
        self, path: str, label_selector: str = "", limit: int = LIST_PAGE
    ) -> AsyncIterator[Page]:
        """A list in pages of ``limit`` (``continue`` tokens): a caller that handles each
        page before the next never holds the whole list, nor the whole response (K3: a
        restart with large ApiKeys peaked at twice the memory it settled at)."""
        query = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            answer = await self.call("GET", path, query=query)
            items: Page = answer.get("items") or []
            yield items
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = str(token)

    def _fence(self, method: str, path: str) -> None:
        """Every write passes here first (the in-memory API's too): ``write_guard`` may
        refuse it (leader fencing)."""
        if self.write_guard is not None:
            self.write_guard(method, path)

    async def create(self, path: str, body: Body) -> Body:
        self._fence("POST", path)
        return await self.call("POST", path, body)

    async def replace(self, path: str, body: Body) -> Body:
        self._fence("PUT", path)
        return await self.call("PUT", path, body)

    async def patch(self, path: str, patch: Any, *, kind: str = "merge") -> Body:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        self._fence("PATCH", path)
        return await self.call("PATCH", path, patch, content_type=content_type)

    async def delete(self, path: str, *, uid: str | None = None) -> bool:
        """Delete; True if it was there. With ``uid``, only that exact object."""
        return await self.delete_held(path, uid=uid) is not False

    async def delete_held(self, path: str, *, uid: str | None = None) -> Body | bool | None:
        """Delete; False if it was not there, the object if a finalizer still holds it
        (``deletionTimestamp`` set, the object kept), else None (it is gone)."""
        body = {"preconditions": {"uid": uid}} if uid else None
        self._fence("DELETE", path)
        try:
            answer = await self.call("DELETE", path, body)
        except NotFound:
            return False
        meta = answer.get("metadata") or {}
        held = answer.get("kind") != "Status" and meta.get("finalizers")
        return answer if held and meta.get("deletionTimestamp") else None


def _translate(status: int, data: bytes, method: str, path: str) -> KeykeeperError:
    try:
        message = str(json.loads(data or b"{}").get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    text = f"{method} {path}: {status} {message}"
    if status == 404:
        return NotFound(text)
    if status == 409:
        return Conflict(text)
    if status in (401, 403):
        return Forbidden(text)
    if status == 429 or status >= 500:
        return ApiUnavailable(text)
    return ApiError(text)
