"""10,000 idle ApiKeys: what the operator costs when nothing happens.

Creates --keys ApiKeys (each stored, projected into its own namespace, with a 90-day
rotation period, so every key holds a real timer), waits until all are Ready, then
watches the operator for --idle seconds in which nothing changes and reports its
CPU (from /proc), its resident memory, and the API requests it makes per minute
(counted by the apiserver's audit log). Prints a table; writes bench/results/idle.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, api_client, apikey, keypolicy
from devtools.operator import SERVICE_ACCOUNT, running_operator

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ready_count(kk: Cluster) -> int:
    items = kk.custom.list_cluster_custom_object("keykeeper.dev", "v1alpha1", "apikeys")["items"]
    return sum(1 for k in items if (k.get("status") or {}).get("phase") == "Active")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/idle.json"))
    args = parser.parse_args()

    with ControlPlane() as plane:
        assert plane.admin is not None
        workdir = Path(tempfile.mkdtemp(prefix="keykeeper-idle-"))
        with running_operator(plane, workdir) as operator:
            with api_client(plane.admin) as api:
                kk = Cluster(api)
                kk.create(keypolicy("idle", rotation={"period": "90d"}))
                spaces = [kk.namespace("idle") for _ in range(args.namespaces)]

                def make(n: int) -> None:
                    ns = spaces[n % len(spaces)]
                    kk.create(apikey(ns, f"key-{n:05d}", "idle", projections=[{"namespace": ns}]))

                started = time.monotonic()
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(make, range(args.keys)))
                created = time.monotonic() - started
                while (done := ready_count(kk)) < args.keys:
                    print(
                        f"  {done}/{args.keys} Active after {time.monotonic() - started:.0f}s",
                        flush=True,
                    )
                    time.sleep(10)
                settled = time.monotonic() - started
                # the queue may still be working through echoes: wait for 15 quiet seconds
                quiet_since, last = time.monotonic(), len(plane.audit_events(SERVICE_ACCOUNT))
                while time.monotonic() - quiet_since < 15:
                    time.sleep(5)
                    now = len(plane.audit_events(SERVICE_ACCOUNT))
                    if now != last:
                        quiet_since, last = time.monotonic(), now
                quiet = time.monotonic() - started

            assert operator.proc is not None
            pid = operator.proc.pid
            before_requests = len(plane.audit_events(SERVICE_ACCOUNT))
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            rss_start = rss_mib(pid)
            time.sleep(args.idle)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            rss_end = rss_mib(pid)
            idle_events = plane.audit_events(SERVICE_ACCOUNT)[before_requests:]

    minutes = (t1 - t0) / 60
    by_verb: dict[str, int] = {}
    for event in idle_events:
        by_verb[event["verb"]] = by_verb.get(event["verb"], 0) + 1
    result = {
        "benchmark": "idle",
        "keys": args.keys,
        "namespaces": args.namespaces,
        "create_seconds": round(created, 1),
        "all_active_seconds": round(settled, 1),
        "quiet_after_seconds": round(quiet, 1),
        "idle_seconds": round(t1 - t0, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "rss_mib": {"start": round(rss_start, 1), "end": round(rss_end, 1)},
        "api_requests_per_minute": round(len(idle_events) / minutes, 2),
        "api_requests_by_verb": by_verb,
    }
    print(f"\n{args.keys} ApiKeys in {args.namespaces} namespaces, each stored and projected once")
    print(
        f"  created in {created:.0f}s; all Active after {settled:.0f}s; no API request after {quiet:.0f}s"
    )
    print(f"  idle for {t1 - t0:.0f}s:")
    print(f"    operator CPU          {result['cpu_percent_of_one_core']}% of one core")
    print(f"    operator memory (RSS) {rss_start:.0f} MiB -> {rss_end:.0f} MiB")
    print(f"    API requests/minute   {result['api_requests_per_minute']}  {by_verb}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
