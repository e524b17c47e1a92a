"""Scale: N ApiKeys (default 100,000) on one replica of the operator, one control plane.

Each key projects into the namespaces of one of ten groups (a label selector), one
namespace per group to begin with. Measured, in order:
1. **bulk**: the N keys created by one aiohttp driver (concurrency 32) until all N
   Secrets exist: seconds, keys/s, the operator's requests per key;
2. **idle**: a minute with nothing to do: the operator's CPU (% of one core), its
   writes (all verbs but get/list/watch, from the apiserver's audit log), its RSS;
3. **relabel**: a new namespace labelled into one group, so N/10 keys must each
   project into it: seconds until the last of those Secrets exists;
4. **restart**: the operator stopped (SIGTERM) and started: its writes in the first
   30 s with nothing changed (want: none); then once more, with a key created at the
   moment it starts: seconds until that key's Secret exists (ready for changes).
The local provider only: the KMS rate limits are the guard's (tests/unit/test_guard.py,
bench/kms.py).

Run: `.venv/bin/python bench/scale.py [--keys 100000] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.controlplane import ControlPlane
from devtools.controlplane.launcher import completed_by
from devtools.kk import Cluster, api_client, keypolicy
from devtools.operator import SERVICE_ACCOUNT, running_operator

from bench.fanout import Driver, apikey, machine, proc_usage

GROUPS = 10
LABEL = "scale-group"
READS = {"get", "list", "watch"}


class AuditTail:
    """The operator's requests from the apiserver's audit log, read on from an offset
    (the log grows to hundreds of MB at this scale)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.path = plane.logs / "audit.log"
        self.offset = 0
        self.inode = 0

    def skip(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.inode = self.path.stat().st_ino if self.path.exists() else 0

    def read(self) -> list[dict[str, Any]]:
        """Events since the last read; refuses a log that was rotated meanwhile (the
        launcher sets no rotation: a rotated log would read as no requests at all)."""
        out = []
        if self.path.stat().st_ino != self.inode or self.path.stat().st_size < self.offset:
            raise RuntimeError(f"{self.path} was rotated: the requests cannot be counted")
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            if SERVICE_ACCOUNT.encode() not in line:
                continue
            event = json.loads(line)
            if completed_by(event, SERVICE_ACCOUNT):
                out.append(event)
        return out


def writes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["verb"] not in READS]


async def count(driver: Driver, namespace: str) -> int:
    """Secrets in a namespace, from one list of one item and the remaining count."""
    url = f"{driver.server}/api/v1/namespaces/{namespace}/secrets"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=driver.ssl)) as session,
        session.get(url, params={"limit": "1"}) as response,
    ):
        body = await response.json()
    return len(body["items"]) + int(body["metadata"].get("remainingItemCount") or 0)


def wait_count(driver: Driver, namespaces: list[str], want: int, timeout: float) -> float:
    start = time.perf_counter()
    while sum(asyncio.run(count(driver, ns)) for ns in namespaces) < want:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"fewer than {want} Secrets after {timeout} s")
        time.sleep(0.5)
    return time.perf_counter() - start


def key(home: str, name: str, group: int) -> tuple[str, dict[str, Any]]:
    selector = {"matchLabels": {LABEL: f"g{group}"}}
    return apikey(home, name, [], policy="scale", projections=[{"namespaceSelector": selector}])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(keys: int, idle_seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "keys": keys}
    with (
        tempfile.TemporaryDirectory() as tmp,
        ControlPlane() as plane,
        api_client(plane.admin) as api,  # type: ignore[arg-type]
        running_operator(plane, Path(tmp)) as operator,
    ):
        kk, driver, audit = Cluster(api), Driver(plane), AuditTail(plane)
        home = kk.namespace("home")
        dests = [kk.namespace(f"dest-g{g}", {LABEL: f"g{g}"}) for g in range(GROUPS)]
        selector = {"matchExpressions": [{"key": LABEL, "operator": "Exists"}]}
        kk.create(keypolicy("scale", targets={"selector": selector}))
        assert operator.proc is not None
        pid = operator.proc.pid

        # 1. bulk
        audit.skip()
        cpu0, _ = proc_usage(pid)
        start = time.perf_counter()
        asyncio.run(driver.post_all([key(home, f"k{i}", i % GROUPS) for i in range(keys)]))
        posted = time.perf_counter() - start
        wait_count(driver, dests, keys, timeout=max(600.0, keys / 20))
        bulk = time.perf_counter() - start
        time.sleep(5.0)
        cpu1, _ = proc_usage(pid)
        requests = audit.read()
        out["bulk"] = {
            "driver_post_seconds": round(posted, 1),
            "seconds": round(bulk, 1),
            "keys_per_s": round(keys / bulk, 1),
            "requests_per_key": round(len(requests) / keys, 2),
            "cpu_ms_per_key": round((cpu1 - cpu0) * 1000 / keys, 2),
        }
        print("bulk", out["bulk"], flush=True)

        # 2. idle
        time.sleep(10.0)  # the last status writes and Events
        audit.skip()
        cpu0, _ = proc_usage(pid)
        time.sleep(idle_seconds)
        cpu1, hwm = proc_usage(pid)
        out["idle"] = {
            "seconds": idle_seconds,
            "cpu_percent_of_a_core": round((cpu1 - cpu0) * 100 / idle_seconds, 2),
            "writes": len(writes(audit.read())),
            "rss_mib": round(rss(pid) / 2**20, 1),
            "peak_rss_mib": round(hwm / 2**20, 1),
        }
        print("idle", out["idle"], flush=True)

        # 3. relabel: one new namespace joins group 0
        audit.skip()
        start = time.perf_counter()
        extra = kk.namespace("extra", {LABEL: "g0"})
        affected = len(range(0, keys, GROUPS))
        relabel = wait_count(driver, [extra], affected, timeout=600)
        out["relabel"] = {
            "keys_affected": affected,
            "seconds": round(time.perf_counter() - start, 1),
            "after_namespace_created_seconds": round(relabel, 1),
        }
        print("relabel", out["relabel"], flush=True)
        time.sleep(10.0)

        # 4. restart: first quiet (no change for 30 s: no writes), then with a new key
        operator.stop()
        audit.skip()
        operator.start()
        assert operator.proc is not None
        time.sleep(30.0)
        made = writes(audit.read())
        operator.stop()
        start = time.perf_counter()
        operator.start()
        kk.create(
            {
                "apiVersion": "keykeeper.dev/v1alpha1",
                "kind": "ApiKey",
                "metadata": {"name": "probe", "namespace": home},
                "spec": key(home, "probe", 1)[1]["spec"],
            }
        )
        while kk.secret(dests[1], "probe") is None:
            time.sleep(0.1)
        out["restart"] = {
            "writes_in_30s_after_a_restart": len(made),
            "writes_by_verb": sorted(
                {f"{e['verb']} {e['objectRef'].get('resource')}" for e in made}
            ),
            "start_to_new_key_secret_seconds": round(time.perf_counter() - start, 1),
            "rss_mib": round(rss(operator.proc.pid) / 2**20, 1),
        }
        print("restart", out["restart"], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measured")
    parser.add_argument("--json", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()
    result = run(args.keys, args.idle)
    print(json.dumps(result, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
