"""K3 (part): the start-up lists come in pages (``limit`` and ``continue``), each handled
before the next is asked for. Against a real HTTP server on a local port, through the
real client."""

from __future__ import annotations

import asyncio

from aiohttp import web
from kubernetes import client

from keykeeper.kube.client import Kube

ITEMS = [{"metadata": {"name": f"k{n}"}} for n in range(7)]


async def _paged(limit: int) -> tuple[list[list[str]], list[dict[str, str]]]:
    asked: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        query = dict(request.query)
        asked.append(query)
        start = int(query.get("continue") or 0)
        end = start + int(query["limit"])
        token = str(end) if end < len(ITEMS) else ""
        return web.json_response({"items": ITEMS[start:end], "metadata": {"continue": token}})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kube = Kube(client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}")))
    pages: list[list[str]] = []
    try:
        async for page in kube.pages("/apis/keykeeper.dev/v1alpha1/apikeys", "a=b", limit=limit):
            pages.append([item["metadata"]["name"] for item in page])
            assert len(asked) == len(pages), "the next page is asked for only after this one"
        assert [i["metadata"]["name"] for i in await kube.list("/x")] == [
            i["metadata"]["name"] for i in ITEMS
        ]
    finally:
        await kube.close()
        await runner.cleanup()
    return pages, asked


def test_a_list_comes_in_pages_each_asked_for_after_the_last() -> None:
    pages, asked = asyncio.run(_paged(3))
    assert pages == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["k6"]]
    assert [a.get("continue") for a in asked[:3]] == [None, "3", "6"]
    assert all(a["labelSelector"] == "a=b" and a["limit"] == "3" for a in asked[:3])
