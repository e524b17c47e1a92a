"""The operator against the real control plane: latency and API writes.

Measures (printed as a table, and written as JSON to bench/results/reconcile.json):
* the time from creating an ApiKey to its Secret existing in a target namespace
  (median and spread over --keys runs);
* the API writes the operator makes for one ApiKey with three targets, counted by
  the apiserver's own audit log (the operator's ServiceAccount, by verb and resource);
* the writes (and reads) it makes over --idle seconds in which nothing changes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, api_client, apikey, keypolicy
from devtools.operator import SERVICE_ACCOUNT, running_operator, wait_for

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def tally(events: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    for event in events:
        ref = event.get("objectRef", {})
        what = f"{event['verb']} {ref.get('resource', '?')}" + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        (writes if event["verb"] in WRITE_VERBS else reads)[what] += 1
    return writes, reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/reconcile.json"))
    args = parser.parse_args()

    with ControlPlane() as plane:
        assert plane.admin is not None
        workdir = Path(tempfile.mkdtemp(prefix="keykeeper-bench-"))
        with running_operator(plane, workdir), api_client(plane.admin) as api:
            kk = Cluster(api)
            home = kk.namespace("home")
            targets = [kk.namespace("t") for _ in range(3)]
            kk.create(keypolicy("bench", targets={"names": targets}))
            # warm-up: the operator has started and reconciled a first key
            kk.create(apikey(home, "warmup", "bench", projections=[{"namespace": home}]))
            wait_for(lambda: kk.secret(home, "warmup"), timeout=60)
            time.sleep(1)

            # 1. one key, three targets: every write the operator makes for it
            before = len(plane.audit_events(SERVICE_ACCOUNT))
            kk.create(
                apikey(home, "three", "bench", projections=[{"namespace": t} for t in targets])
            )
            for t in targets:
                wait_for(lambda t=t: kk.secret(t, "three"), timeout=60)
            time.sleep(3)  # let the echoes of its own writes settle
            one_key_writes, one_key_reads = tally(plane.audit_events(SERVICE_ACCOUNT)[before:])

            # 2. latency from create to the Secret existing in a target namespace
            latencies = []
            for n in range(args.keys):
                name = f"lat-{n}"
                start = time.perf_counter()
                kk.create(apikey(home, name, "bench", projections=[{"namespace": targets[0]}]))
                wait_for(lambda name=name: kk.secret(targets[0], name), timeout=60, interval=0.005)
                latencies.append(time.perf_counter() - start)
            time.sleep(3)

            # 3. steady state: nothing changes for --idle seconds
            before = len(plane.audit_events(SERVICE_ACCOUNT))
            time.sleep(args.idle)
            idle_writes, idle_reads = tally(plane.audit_events(SERVICE_ACCOUNT)[before:])

    result = {
        "benchmark": "reconcile",
        "apply_to_secret_ms": {
            "n": len(latencies),
            "median": round(statistics.median(latencies) * 1000, 1),
            "min": round(min(latencies) * 1000, 1),
            "p90": round(sorted(latencies)[int(0.9 * (len(latencies) - 1))] * 1000, 1),
            "max": round(max(latencies) * 1000, 1),
        },
        "one_key_three_targets": {
            "writes": sum(one_key_writes.values()),
            "by_kind": dict(one_key_writes),
            "reads": sum(one_key_reads.values()),
            "reads_by_kind": dict(one_key_reads),
        },
        "steady_state": {
            "seconds": args.idle,
            "writes": sum(idle_writes.values()),
            "reads": sum(idle_reads.values()),
            "by_kind": dict(idle_writes + idle_reads),
        },
    }
    lat = result["apply_to_secret_ms"]
    print(
        f"apply -> Secret in target namespace, {lat['n']} keys: median {lat['median']} ms "
        f"(min {lat['min']}, p90 {lat['p90']}, max {lat['max']})"
    )
    print(
        f"\nAPI writes for one ApiKey with three targets: {sum(one_key_writes.values())} "
        f"(and {sum(one_key_reads.values())} reads)"
    )
    for what, count in sorted(one_key_writes.items()):
        print(f"  {count:3}  {what}")
    print(
        f"\nsteady state, {args.idle:.0f} s with nothing changing: {sum(idle_writes.values())} writes, "
        f"{sum(idle_reads.values())} reads"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
