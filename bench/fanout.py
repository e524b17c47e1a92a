"""Fan-out against one real control plane: N keys x 3 target namespaces.

In one run, on one control plane, one driver (aiohttp, concurrency 32):
* the plain client: the driver itself creates N x 3 Secrets (the limit here);
* keykeeper: the driver creates N ApiKeys, each projected into 3 namespaces, and the
  clock stops when the last of the N x 3 Secrets exists.

* the peers (unless ``--no-peers``), built from their Go modules and cached
  (devtools/peers.py): the Sealed Secrets controller with pre-sealed objects and the
  External Secrets Operator with its fake provider (bench/fanout_peers.py), each making
  the same N x 3 Secrets in namespaces of its own.

Reported for each controller: time to all Secrets, Secrets/s, the rate as a fraction
of the plain client's in the same run, its API requests (all verbs, from the
apiserver's audit log) per key, its CPU per key and its peak RSS. Then keykeeper's
single-key latency (apply to Secret) against one plain create's round trip.

Run: `.venv/bin/python bench/fanout.py [--keys 1000] [--no-peers] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
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

from bench.fanout_peers import Item, external_secrets, sealed_secrets

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

    async def timed_post(self, path: str, body: dict[str, Any]) -> float:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl)) as session:
            async with session.get(self.server + "/version") as warm:  # connection made first
                await warm.read()
            start = time.perf_counter()
            async with session.post(self.server + path, json=body) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status}")
            return time.perf_counter() - start

    async def post_then_get(self, item: Item, wanted: str) -> float:
        """Seconds from posting ``item`` to ``wanted`` existing (polled every 2 ms)."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl)) as session:
            async with session.get(self.server + "/version") as warm:
                await warm.read()
            start = time.perf_counter()
            async with session.post(self.server + item[0], json=item[1]) as response:
                await response.read()
            while True:
                async with session.get(self.server + wanted) as found:
                    await found.read()
                    if found.status == 200:
                        return time.perf_counter() - start
                await asyncio.sleep(0.002)

    async def count(self, namespaces: list[str]) -> int:
        """Secrets in the namespaces, each from a list of one and its remaining count (a
        full list every 0.2 s would cost the apiserver more than what is measured)."""
        connector = aiohttp.TCPConnector(ssl=self.ssl)
        async with aiohttp.ClientSession(connector=connector) as session:
            total = 0
            for ns in namespaces:
                url = f"{self.server}/api/v1/namespaces/{ns}/secrets"
                async with session.get(url, params={"limit": "1"}) as response:
                    body = await response.json()
                total += len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)
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


async def until(driver: Driver, namespaces: list[str], want: int) -> float:
    start = time.perf_counter()
    while await driver.count(namespaces) < want:
        await asyncio.sleep(0.2)
    return time.perf_counter() - start


def measure(
    plane: ControlPlane,
    driver: Driver,
    who: str,
    user: str,
    pid: int,
    items: list[Item],
    namespaces: list[str],
    keys: int,
) -> dict[str, Any]:
    """Post ``items``, wait for keys x TARGETS Secrets, and count what it cost."""
    want = keys * TARGETS
    cpu0, _ = proc_usage(pid)
    server0 = server_cpu(plane)
    before = len(plane.audit_events(user))
    start = time.perf_counter()
    asyncio.run(driver.post_all(items))
    asyncio.run(until(driver, namespaces, want))
    seconds = time.perf_counter() - start
    time.sleep(2.0)  # the status writes and Events that follow the last Secret
    cpu1, hwm = proc_usage(pid)
    server1 = server_cpu(plane)
    requests = plane.audit_events(user)[before:]
    by_verb = Counter(f"{e['verb']} {e.get('objectRef', {}).get('resource', '')}" for e in requests)
    return {
        "who": who,
        "seconds": round(seconds, 2),
        "per_s": round(want / seconds, 1),
        "requests": len(requests),
        "requests_per_key": round(len(requests) / keys, 2),
        "requests_by_verb": dict(by_verb.most_common()),
        "cpu_seconds": round(cpu1 - cpu0, 2),
        "cpu_ms_per_key": round((cpu1 - cpu0) * 1000 / keys, 2),
        "peak_rss_mib": round(hwm / 2**20, 1),
        "apiserver_etcd_cpu_seconds": round(server1 - server0, 2),
    }


def server_cpu(plane: ControlPlane) -> float:
    """CPU seconds the apiserver and etcd have used (they share the 2 cores with all else)."""
    return sum(proc_usage(p.pid)[0] for p in plane._procs.values() if p.poll() is None)


def apikey(
    namespace: str,
    name: str,
    targets: list[str],
    policy: str = "fanout",
    projections: list[dict[str, Any]] | None = None,
) -> Item:
    """A generated key projected into ``targets`` (or the ``projections`` given)."""
    return (
        f"/apis/keykeeper.dev/v1alpha1/namespaces/{namespace}/apikeys",
        {
            "apiVersion": "keykeeper.dev/v1alpha1",
            "kind": "ApiKey",
            "metadata": {"name": name},
            "spec": {
                "policy": policy,
                "source": {"generate": {}},
                "projections": projections or [{"namespace": ns} for ns in targets],
            },
        },
    )


def latency(driver: Driver, home: str, target: str, tries: int = 7) -> dict[str, float]:
    """Medians, in ms: one plain create's round trip, and one key from apply to its Secret."""
    plain, keyed = [], []
    for n in range(tries):
        body = secret(f"rt-{n}", os.urandom(20))
        plain.append(asyncio.run(driver.timed_post(f"/api/v1/namespaces/{target}/secrets", body)))
        item = apikey(home, f"lat-{n}", [target])
        keyed.append(
            asyncio.run(driver.post_then_get(item, f"/api/v1/namespaces/{target}/secrets/lat-{n}"))
        )
    plain_ms, key_ms = statistics.median(plain) * 1000, statistics.median(keyed) * 1000
    return {
        "plain_create_ms": round(plain_ms, 1),
        "apply_to_secret_ms": round(key_ms, 1),
        "x_plain_create": round(key_ms / plain_ms, 2),
    }


def _profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording the operator while it holds the GIL (its Python CPU), as collapsed
    stacks into ``out``, if asked for."""
    if out is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--gil", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(keys: int, peers: bool, profile: Path | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        ControlPlane() as plane,
        api_client(plane.admin) as api,  # type: ignore[arg-type]
    ):
        kk = Cluster(api)
        driver = Driver(plane)
        targets = [kk.namespace(f"t{n}") for n in range(TARGETS)]
        plains = [kk.namespace(f"plain{n}") for n in range(TARGETS)]
        items = [
            (f"/api/v1/namespaces/{ns}/secrets", secret(f"plain-{i}", os.urandom(20)))
            for i in range(keys)
            for ns in plains
        ]
        server0 = server_cpu(plane)
        start = time.perf_counter()
        asyncio.run(driver.post_all(items))
        plain = time.perf_counter() - start
        rows.append(
            {
                "who": "plain client (the limit here)",
                "seconds": round(plain, 2),
                "per_s": round(keys * TARGETS / plain, 1),
                "apiserver_etcd_cpu_seconds": round(server_cpu(plane) - server0, 2),
            }
        )

        with running_operator(plane, Path(tmp)) as operator:
            home = kk.namespace("home")
            kk.create(keypolicy("fanout", targets={"names": targets}))
            assert operator.proc is not None
            spy = _profiler(operator.proc.pid, profile)
            rows.append(
                measure(
                    plane,
                    driver,
                    "keykeeper",
                    SERVICE_ACCOUNT,
                    operator.proc.pid,
                    [apikey(home, f"k{i}", targets) for i in range(keys)],
                    targets,
                    keys,
                )
            )
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            single = latency(driver, home, targets[0])
        if peers:
            for setup in (sealed_secrets, external_secrets):
                with setup(plane, Path(tmp), keys, TARGETS) as peer:
                    rows.append(
                        measure(
                            plane,
                            driver,
                            peer.name,
                            peer.user,
                            peer.process.pid,
                            peer.items,
                            peer.namespaces,
                            keys,
                        )
                    )
    for row in rows:
        row["fraction_of_plain"] = round(plain / row["seconds"], 3)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "keys": keys,
        "secrets": keys * TARGETS,
        "rows": rows,
        "single_key_latency": single,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} cores, {cpu}"


def table(r: dict[str, Any]) -> str:
    out = [
        f"{r['keys']} keys x {TARGETS} targets = {r['secrets']} Secrets, one control plane "
        f"({r['date']}, {r['machine']})"
    ]
    out.append(
        f"{'who':<40} {'seconds':>8} {'Secrets/s':>10} {'x plain':>8} {'req/key':>8} "
        f"{'CPU ms/key':>10} {'RSS MiB':>8} {'apiserver+etcd CPU s':>21}"
    )
    for row in r["rows"]:
        out.append(
            f"{row['who']:<40} {row['seconds']:>8} {row['per_s']:>10} {row['fraction_of_plain']:>8} "
            f"{row.get('requests_per_key', '-'):>8} {row.get('cpu_ms_per_key', '-'):>10} "
            f"{row.get('peak_rss_mib', '-'):>8} {row['apiserver_etcd_cpu_seconds']:>21}"
        )
    for row in r["rows"]:
        if "requests_by_verb" in row:
            verbs = ", ".join(f"{n} {what}" for what, n in row["requests_by_verb"].items())
            out.append(f"  {row['who']}: {verbs}")
    lat = r["single_key_latency"]
    out.append(
        f"single key, apply to Secret: {lat['apply_to_secret_ms']} ms median, "
        f"{lat['x_plain_create']}x one plain create ({lat['plain_create_ms']} ms)"
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument(
        "--no-peers", action="store_true", help="keykeeper and the plain client only"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat, to show the noise")
    parser.add_argument("--profile", type=Path, help="py-spy the operator's fan-out into this file")
    parser.add_argument("--json", type=Path, default=Path("bench/results/fanout.json"))
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        r = run(args.keys, not args.no_peers, args.profile)
        print(table(r), flush=True)
        results.append(r)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results if args.runs > 1 else results[0], indent=2) + "\n")


if __name__ == "__main__":
    main()
