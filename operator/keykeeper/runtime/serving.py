"""The operator's one HTTP port: ``/healthz`` (liveness), ``/readyz`` (readiness) and
``/metrics`` (Prometheus text format).

* live: the event loop answers (a wedged loop cannot answer at all);
* ready: the replica's caches are loaded — a standby replica is ready too, so a
  rollout proceeds and a failover finds a warm replica;
* metrics: ``keykeeper.runtime.metrics.REGISTRY``; open, or, with a ``Reviewer``
  (``KEYKEEPER_METRICS_AUTH=kubernetes``), only to a bearer token the apiserver
  authenticates and RBAC lets ``get`` ``/metrics`` (``metricsauth``).

Nothing served here carries a key's value or data key; the per-key series name keys
(namespace, name, owner label) unless ``KEYKEEPER_PER_KEY_METRICS=false``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from keykeeper.runtime import metrics
from keykeeper.runtime.metricsauth import Reviewer, Verdict

log = logging.getLogger("keykeeper.serving")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too); ``:8080`` listens on every interface."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an address with a port: {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a pod's port


class Server:
    def __init__(
        self, address: str, ready: Callable[[], bool], reviewer: Reviewer | None = None
    ) -> None:
        self.host, self.port = parse_address(address)
        self._ready, self._reviewer = ready, reviewer
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("serving /healthz, /readyz and /metrics on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="loading\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._reviewer is not None:
            verdict = await self._reviewer.check(request.headers.get("Authorization", ""))
            if verdict is not Verdict.ALLOWED:
                return web.Response(status=int(verdict), text=f"{verdict.name.lower()}\n")
        # the world is read on the loop, the text rendered off it (per-key series: K4)
        body = await asyncio.to_thread(metrics.render, metrics.WORLD.snapshot())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
