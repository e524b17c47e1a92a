"""K12 (part): the leader fence is checked again after every wait inside a write.

A 429 is waited out (``Retry-After``) and the write sent again; a replica that lost the
Lease during that wait must not send it. Against a real HTTP server on a local port,
through the real client and its aiohttp session.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from kubernetes import client

from keykeeper.errors import NotLeading
from keykeeper.kube.client import Kube


async def _sent_after_losing_the_lease() -> tuple[int, bool]:
    received: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(request.method)
        return web.json_response({}, status=429, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = client.Configuration(host=f"http://127.0.0.1:{port}")
    kube = Kube(client.ApiClient(config))
    leading = [True]

    def fence(method: str, path: str) -> None:
        if not leading[0]:
            raise NotLeading(f"{method} {path}: not the leader")

    kube.write_guard = fence

    async def lose_the_lease() -> None:
        await asyncio.sleep(0.5)  # while the client waits out the 429
        leading[0] = False

    loser = asyncio.create_task(lose_the_lease())
    refused = False
    try:
        await kube.patch("/api/v1/namespaces/a/secrets/s", {"metadata": {}})
    except NotLeading:
        refused = True
    finally:
        await loser
        await kube.close()
        await runner.cleanup()
    return len(received), refused


def test_a_write_waiting_out_a_429_is_not_sent_once_the_lease_is_lost() -> None:
    sent, refused = asyncio.run(_sent_after_losing_the_lease())
    assert refused, "the fence refused the retry"
    assert sent == 1, f"the write went out {sent} times; once before the lease was lost"
