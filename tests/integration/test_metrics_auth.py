"""Authenticated metrics (K19): with ``KEYKEEPER_METRICS_AUTH=kubernetes`` the operator's
``/metrics`` answers only a bearer token the real apiserver authenticates and RBAC lets
``get`` ``/metrics``; the probes stay open. The operator's own server, its own reviews,
the operator's ServiceAccount under ``deploy/metrics-auth.yaml``, over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import api_client, unique
from devtools.operator import NAMESPACE

from keykeeper.kube.client import Kube
from keykeeper.runtime.metricsauth import Reviewer
from keykeeper.runtime.serving import Server

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def status(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_only_a_token_rbac_lets_get_metrics_reads_them(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(REPO / "deploy" / "metrics-auth.yaml"))
    scrapers = unique("scrapers")
    reader, stranger = unique("prometheus"), unique("stranger")
    tokens = {}
    for name in (reader, stranger):
        control_plane.service_account(scrapers, name, 600)
        tokens[name] = control_plane.kubectl(
            "-n", scrapers, "create", "token", name, "--duration=600s"
        ).strip()
    control_plane.kubectl(
        "create", "clusterrolebinding", unique("read-metrics"),
        "--clusterrole=keykeeper-metrics-reader", f"--serviceaccount={scrapers}:{reader}",
    )  # fmt: skip
    operator = control_plane.service_account(NAMESPACE, "keykeeper", 600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def scrape_as_each() -> dict[str, int]:
        kube = Kube(api_client(operator))
        server = Server(f"127.0.0.1:{port}", lambda: True, Reviewer(kube))
        await server.start()
        try:
            asks = {
                "reader": (f"{base}/metrics", tokens[reader]),
                "reader again (kept)": (f"{base}/metrics", tokens[reader]),
                "stranger": (f"{base}/metrics", tokens[stranger]),
                "made-up token": (f"{base}/metrics", "not-a-token"),
                "no token": (f"{base}/metrics", None),
                "probe without a token": (f"{base}/healthz", None),
            }
            return {
                what: await asyncio.to_thread(status, url, token)
                for what, (url, token) in asks.items()
            }
        finally:
            await server.stop()
            await kube.close()

    assert asyncio.run(scrape_as_each()) == {
        "reader": 200,
        "reader again (kept)": 200,
        "stranger": 403,
        "made-up token": 401,
        "no token": 401,
        "probe without a token": 200,
    }
