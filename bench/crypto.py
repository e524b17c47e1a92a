"""Seal and open operations per second for a 64-byte value, per provider.

Run: `make bench` (or `.venv/bin/python bench/crypto.py [--seconds N] [--json PATH]`).
The PKCS#11 figures are against a real SoftHSM2 token made in a temp directory.
Prints a table, and writes the same figures as JSON (default bench/results/crypto.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.softhsm import init_token

from keykeeper.crypto.envelope import Binding, KeyWrapper, open_envelope, seal_envelope
from keykeeper.crypto.kdf import MasterKey
from keykeeper.providers import KeyProvider, ProviderSettings, registry
from keykeeper.providers.local import LocalProvider

VALUE = b"k" * 64
BINDING = Binding("bench", "key", "00000000-0000-4000-8000-000000000000", 1)


def rate(operation: Callable[[], object], seconds: float) -> tuple[float, int]:
    operation()  # warm up (first session, key lookup)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        operation()
        count += 1
    return count / (time.perf_counter() - start), count


def measure(name: str, provider: KeyProvider, seconds: float) -> dict[str, object]:
    def resolve(_: str) -> KeyWrapper:
        return provider

    blob = seal_envelope(VALUE, BINDING, provider)
    seal_rate, seal_n = rate(lambda: seal_envelope(VALUE, BINDING, provider), seconds)
    open_rate, open_n = rate(lambda: open_envelope(blob, BINDING, resolve), seconds)
    return {
        "provider": name,
        "seal_per_s": round(seal_rate, 1),
        "open_per_s": round(open_rate, 1),
        "seal_us": round(1e6 / seal_rate, 1),
        "open_us": round(1e6 / open_rate, 1),
        "samples": seal_n + open_n,
        "envelope_bytes": len(blob),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/crypto.json"))
    args = parser.parse_args()

    rows = [measure("local", LocalProvider(MasterKey.generate()), args.seconds)]
    token = init_token(Path(tempfile.mkdtemp(prefix="keykeeper-bench-hsm-")))
    for mechanism in ("gcm", "kwp"):
        provider = registry.create(
            "pkcs11",
            ProviderSettings(
                key_ref=f"bench-{mechanism}",
                credentials={"pin": token.pin},
                options={
                    "module": token.module,
                    "token": token.label,
                    "create": "true",
                    "mechanism": mechanism,
                },
            ),
        )
        rows.append(measure(f"pkcs11 (SoftHSM2, {mechanism})", provider, args.seconds))
        provider.close()

    header = (
        f"{'provider':<26} {'seal/s':>10} {'open/s':>10} {'seal µs':>9} {'open µs':>9} {'bytes':>6}"
    )
    print(
        f"64-byte value, {args.seconds:.0f} s per figure, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['provider']:<26} {row['seal_per_s']:>10} {row['open_per_s']:>10} "
            f"{row['seal_us']:>9} {row['open_us']:>9} {row['envelope_bytes']:>6}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"benchmark": "crypto", "value_bytes": len(VALUE), "rows": rows}, indent=2)
    )
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
