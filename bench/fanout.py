"""Fan-out against one real control plane: N keys x 3 target namespaces.

In one run, on one control plane, one driver (aiohttp, concurrency 32):
* the plain client: the driver itself creates N x 3 Secrets (the limit here);
* keykeeper: the driver creates N ApiKeys, each projected into 3 namespaces, and the
  clock stops when the last of the N x 3 Secrets exists.

Reported: time to all Secrets, Secrets/s, keykeeper's rate as a fraction of the plain
client's in the same run, the operator's API requests (all verbs, from the
apiserver's audit log) per key, its CPU per key and its peak RSS. Peer controllers
(Sealed Secrets, External Secrets) are not built here yet: the table says so.

Run: `.venv/bin/python bench/fanout.py [--keys 1000] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, api_client, keypolicy
from devtools.operator import SERVICE_ACCOUNT, running_operator

CONCURRENCY = 32
TARGETS = 3


class Driver:
    """The admin's aiohttp client: raw JSON, concurrency-bounded."""

    def __init__(self, plane: ControlPlane) -> None:
        assert plane.admin is not None
        config = yaml.safe_load(plane.admin.kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.server = cluster["server"]
        self.ssl = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.ssl.load_cert_chain(user["client-certificate"], user["client-key"])

    async def post_all(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        connector = aiohttp.TCPConnector(ssl=self.ssl, limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
            for item in items:
                queue.put_nowait(item)

            async def worker() -> None:
                while not queue.empty():
                    path, body = queue.get_nowait()
                    async with session.post(self.server + path, json=body) as response:
                        if response.status >= 300:
                            raise RuntimeError(f"POST {path}: {response.status}")

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    async def count(self, namespaces: list[str], selector: str) -> int:
        connector = aiohttp.TCPConnector(ssl=self.ssl)
        async with aiohttp.ClientSession(connector=connector) as session:
            total = 0
            for ns in namespaces:
                url = f"{self.server}/api/v1/namespaces/{ns}/secrets"
                async with session.get(url, params={"labelSelector": selector}) as response:
                    total += len((await response.json())["items"])
            return total


def secret(name: str, value: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"bench": "plain"}},
        "data": {"api-key": base64.b64encode(value).decode()},
    }


def proc_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return cpu, hwm


async def until(driver: Driver, namespaces: list[str], selector: str, want: int) -> float:
    start = time.perf_counter()
    while await driver.count(namespaces, selector) < want:
        await asyncio.sleep(0.2)
    return time.perf_counter() - start


def run(keys: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ControlPlane() as plane,
        running_operator(plane, Path(tmp)) as operator,
        api_client(plane.admin) as api,  # type: ignore[arg-type]
    ):
        kk = Cluster(api)
        home = kk.namespace("home")
        targets = [kk.namespace(f"t{n}") for n in range(TARGETS)]
        kk.create(keypolicy("fanout", targets={"names": targets}))
        driver = Driver(plane)

        items = [
            (f"/api/v1/namespaces/{ns}/secrets", secret(f"plain-{i}", os.urandom(20)))
            for i in range(keys)
            for ns in targets
        ]
        start = time.perf_counter()
        asyncio.run(driver.post_all(items))
        plain = time.perf_counter() - start

        assert operator.proc is not None
        cpu0, _ = proc_usage(operator.proc.pid)
        before = len(plane.audit_events(SERVICE_ACCOUNT))
        projections = [{"namespace": ns} for ns in targets]
        keys_items = [
            (
                f"/apis/keykeeper.dev/v1alpha1/namespaces/{home}/apikeys",
                {
                    "apiVersion": "keykeeper.dev/v1alpha1",
                    "kind": "ApiKey",
                    "metadata": {"name": f"k{i}"},
                    "spec": {
                        "policy": "fanout",
                        "source": {"generate": {}},
                        "projections": projections,
                    },
                },
            )
            for i in range(keys)
        ]
        start = time.perf_counter()
        asyncio.run(driver.post_all(keys_items))
        asyncio.run(
            until(driver, targets, "app.kubernetes.io/managed-by=keykeeper", keys * TARGETS)
        )
        fanout = time.perf_counter() - start
        time.sleep(2.0)  # the status writes and Events that follow the last Secret
        cpu1, hwm = proc_usage(operator.proc.pid)
        requests = plane.audit_events(SERVICE_ACCOUNT)[before:]
        by_verb = Counter(
            f"{e['verb']} {e.get('objectRef', {}).get('resource', '')}" for e in requests
        )
    secrets = keys * TARGETS
    return {
        "keys": keys,
        "secrets": secrets,
        "plain_seconds": round(plain, 2),
        "plain_per_s": round(secrets / plain, 1),
        "keykeeper_seconds": round(fanout, 2),
        "keykeeper_per_s": round(secrets / fanout, 1),
        "fraction_of_plain": round(plain / fanout, 3),
        "requests": len(requests),
        "requests_per_key": round(len(requests) / keys, 2),
        "requests_by_verb": dict(by_verb.most_common()),
        "operator_cpu_seconds": round(cpu1 - cpu0, 2),
        "operator_cpu_ms_per_key": round((cpu1 - cpu0) * 1000 / keys, 2),
        "operator_peak_rss_mib": round(hwm / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/fanout.json"))
    args = parser.parse_args()
    r = run(args.keys)
    print(f"{r['keys']} keys x {TARGETS} targets = {r['secrets']} Secrets, one control plane")
    print(f"{'who':<34} {'seconds':>8} {'Secrets/s':>10} {'x plain':>8}")
    print(
        f"{'plain client (the limit here)':<34} {r['plain_seconds']:>8} {r['plain_per_s']:>10} {1:>8}"
    )
    print(
        f"{'keykeeper':<34} {r['keykeeper_seconds']:>8} {r['keykeeper_per_s']:>10} "
        f"{r['fraction_of_plain']:>8}"
    )
    print(f"{'Sealed Secrets, External Secrets':<34} {'not built here yet':>28}")
    print(
        f"keykeeper: {r['requests']} API requests ({r['requests_per_key']} per key), "
        f"{r['operator_cpu_seconds']} s CPU ({r['operator_cpu_ms_per_key']} ms per key), "
        f"peak RSS {r['operator_peak_rss_mib']} MiB"
    )
    for what, count in r["requests_by_verb"].items():
        print(f"    {count:>6}  {what}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
