"""What a scrape of /metrics costs at N keys, with the per-key series on and off.

Run: `.venv/bin/python bench/metrics.py [--keys 10000] [--json PATH]`. The keys are fed
through the same bookkeeping the operator uses (``KeyFactsBook``: a status seen, an
owner label read), every one with a scheduled rotation and one in ten with an expiry
(half of those expiring), as a fleet of generated and imported keys would be. Prints
series, scrape bytes, the time to take the snapshot (on the event loop) and to render
it (on a thread) for each setting, and writes the same figures as
JSON (default bench/results/metrics.json). The README's "Alerts" figures come from here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keykeeper.runtime import metrics
from keykeeper.runtime.keyfacts import KeyFactsBook

OWNER = "keykeeper.dev/owner"


def fleet(keys: int, owner_label: str) -> KeyFactsBook:
    book = KeyFactsBook(owner_label=owner_label)
    for n in range(keys):
        ref = (f"team-{n % 200:03d}", f"key-{n:06d}")
        labels = {OWNER: f"team-{n % 50:02d}"}
        status: dict[str, object] = {
            "phase": "Active",
            "nextRotationAt": "2027-03-01T00:00:00Z",
            "versions": [{"version": 1, "state": "Current", "createdAt": "2026-12-01T00:00:00Z"}],
        }
        if n % 10 == 0:
            status["valueExpiresAt"] = "2027-01-01T00:00:00Z"
            expiring = n % 20 == 0
            status["conditions"] = [{"type": "Expiring", "status": str(expiring)}]
        book.note_generation(ref, {"metadata": {"generation": 1, "labels": labels}}, 0.0)
        book.status_seen(ref, status)
    return book


def measure(keys: int, per_key: bool) -> dict[str, object]:
    book = fleet(keys, OWNER if per_key else "")
    facts = list(book.facts.values())

    def snapshot() -> metrics.Snapshot:
        return metrics.Snapshot(
            phases={"Active": len(facts)},
            to_rotation=tuple(1.0e6 for _ in facts),
            per_key=book.series() if per_key else None,
        )

    snapshot()  # warm up
    runs, started = 5, time.perf_counter()
    for _ in range(runs):
        taken = snapshot()
    on_loop = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    for _ in range(runs):
        text = metrics.render(taken).decode()
    off_loop = (time.perf_counter() - started) / runs
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    keyed = sum(1 for line in text.splitlines() if 'name="' in line)
    return {
        "keys": keys,
        "per_key_series": per_key,
        "series": series,
        "per_key_series_count": keyed,
        "scrape_bytes": len(text.encode()),
        "snapshot_ms": round(on_loop * 1000, 1),  # on the event loop
        "render_ms": round(off_loop * 1000, 1),  # on a thread
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=Path("bench/results/metrics.json"))
    args = parser.parse_args()
    rows = [measure(args.keys, per_key) for per_key in (False, True)]
    off, on = rows
    extra = {
        "series_per_key": round((on["series"] - off["series"]) / args.keys, 2),  # type: ignore[operator]
        "bytes_per_key": round((on["scrape_bytes"] - off["scrape_bytes"]) / args.keys, 1),  # type: ignore[operator]
    }
    print(
        f"{'per-key':>8} {'series':>8} {'scrape bytes':>13} {'snapshot ms':>12} {'render ms':>10}"
    )
    for row in rows:
        shown = "on" if row["per_key_series"] else "off"
        print(
            f"{shown:>8} {row['series']:>8} {row['scrape_bytes']:>13} "
            f"{row['snapshot_ms']:>12} {row['render_ms']:>10}"
        )
    print(f"per key: {extra['series_per_key']} series, {extra['bytes_per_key']} bytes of scrape")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": platform.node(), "rows": rows, **extra}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
