"""The event loop's time per namespace event: which keys a new namespace concerns (K4).

Run: `.venv/bin/python bench/namespace_events.py [--keys N] [--hostile M] [--json PATH]`.
Builds the operator's world with N ordinary keys (one named target each) and M crafted
ones (8 selector projections with 256 values in all, the CRD's bound: `In` lists of
namespace names and `NotIn` lists) under a policy that targets one namespace, then
creates 74 namespaces and times, on the
same world in the same run, the full scan of every key the world made before K4 and
the targets index (`kube.targets_index`) that replaced it. The index wakes no key the
scan did not, and not the crafted ones: their policy cannot target the new namespaces.
Prints a table, and writes the figures as JSON (default
bench/results/namespace_events.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keykeeper.core.authz import NamespaceInfo
from keykeeper.core.selectors import matches
from keykeeper.kube.world import World
from keykeeper.types import KeyRef

NAME_LABEL = "kubernetes.io/metadata.name"
EVENTS = 74  # the namespaces of the finding


def ordinary(n: int) -> dict[str, Any]:
    return _key(f"team{n % 500}", f"k{n}", [{"namespace": f"api{n % 500}"}])


def crafted(n: int) -> dict[str, Any]:
    values = [f"victim-{n}-{v}" for v in range(32)]
    projections = [
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": NAME_LABEL, "operator": op, "values": values}]
            }
        }
        for op in ("In", "NotIn", "In", "NotIn", "In", "NotIn", "In", "NotIn")
    ]
    return _key("attacker", f"crafted{n}", projections, policy="attacker")


def _key(
    namespace: str, name: str, projections: list[dict[str, Any]], policy: str = "teams"
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"{namespace}-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {"policy": policy, "source": {"generate": {}}, "projections": projections},
    }


def scan(world: World, name: str, before: NamespaceInfo) -> set[KeyRef]:
    """What ``keys_affected_by_namespace`` did before K4: every key, every selector."""
    after = world.namespaces.get(name)
    live = [i.labels for i in (before, after) if i is not None and not i.terminating]
    affected = {
        ref
        for ref in world.key_policy
        if ref[0] == name or name in world.targets.named.get(ref, ())
    }
    for ref, selectors in world.targets.selectors.items():
        if any(matches(s, labels) for s in selectors for labels in live):
            affected.add(ref)
    return affected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--hostile", type=int, default=160)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "namespace_events.json"
    )
    args = parser.parse_args()
    world = World()
    for name, targets in (("teams", {"selector": {}}), ("attacker", {"names": ["victim"]})):
        world.put_policy(
            {
                "metadata": {"name": name},
                "spec": {"sourceNamespaces": {"selector": {}}, "targetNamespaces": targets},
            }
        )
    for n in range(args.keys):
        world.put_key(ordinary(n))
    for n in range(args.hostile):
        world.put_key(crafted(n))
    timings: dict[str, list[float]] = {"scan": [], "index": []}
    queued = {"scan": 0, "index": 0}
    for n in range(EVENTS):
        name = f"new-{n}"
        before = world.put_namespace({"metadata": {"name": name, "labels": {NAME_LABEL: name}}})
        assert before is not None
        started = time.perf_counter()
        scanned = scan(world, name, before)
        timings["scan"].append(time.perf_counter() - started)
        started = time.perf_counter()
        indexed = world.keys_affected_by_namespace(name, before)
        timings["index"].append(time.perf_counter() - started)
        # the scan also woke keys whose policy cannot target the namespace: never more
        assert indexed <= scanned, (name, indexed - scanned)
        queued["scan"] += len(scanned)
        queued["index"] += len(indexed)
    rows = [
        {
            "method": method,
            "keys": args.keys,
            "crafted_keys": args.hostile,
            "events": EVENTS,
            "median_ms": round(statistics.median(times) * 1e3, 3),
            "max_ms": round(max(times) * 1e3, 3),
            "total_ms": round(sum(times) * 1e3, 1),
            "keys_woken": queued[method],
        }
        for method, times in timings.items()
    ]
    print(
        f"{'method':8} {'keys':>8} {'crafted':>8} {'median ms':>10} {'max ms':>9} {'74 events ms':>13}"
    )
    for row in rows:
        print(
            f"{row['method']:8} {row['keys']:>8} {row['crafted_keys']:>8} {row['median_ms']:>10} "
            f"{row['max_ms']:>9} {row['total_ms']:>13} {row['keys_woken']:>11}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"machine": platform.node(), "python": platform.python_version(), "rows": rows},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
