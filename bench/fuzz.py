"""The fuzz at scale: ten thousand random and hostile specs against the real control
plane and the operator (see tests/adversarial/fuzzing.py for what is generated).

Reports, as a table and as JSON (bench/results/fuzz.json): specs applied, admitted and
rejected by the apiserver, operator crashes (unexpected exceptions), stuck keys (no
status for their generation after the settle time), Secrets outside what the policy
authorizes, values leaked into logs, Events, statuses or the audit log, and the
operator's survival. The goal for every count but the first three is 0.

    .venv/bin/python bench/fuzz.py --specs 10000 --rounds 5
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.controlplane import ControlPlane
from devtools.fuzzing import Fuzz, crashes
from devtools.kk import Cluster, api_client, public_key
from devtools.operator import running_operator, wait_for


def leaked(fuzz: Fuzz, haystacks: dict[str, str]) -> list[str]:
    out = []
    for value in fuzz.values:
        for needle in (value.decode(), base64.b64encode(value).decode()):
            out.extend(f"{where}" for where, text in haystacks.items() if needle in text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", type=int, default=10_000, help="specs in all")
    parser.add_argument("--rounds", type=int, default=5, help="fresh namespaces and policies")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--settle", type=float, default=180.0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/fuzz.json"))
    args = parser.parse_args()

    totals = {"specs": 0, "crashes": 0, "stuck": 0, "out_of_scope": 0, "leaks": 0}
    admitted: dict[str, int] = {}
    rejected: dict[str, int] = {}
    examples: list[str] = []
    started = time.monotonic()
    with ControlPlane() as plane:
        assert plane.admin is not None
        workdir = Path(tempfile.mkdtemp(prefix="keykeeper-fuzz-"))
        with running_operator(plane, workdir) as operator, api_client(plane.admin) as api:
            kk = Cluster(api)
            sealing = wait_for(lambda: public_key(plane), timeout=60)
            per_round = args.specs // args.rounds
            for round_ in range(args.rounds):
                fuzz = Fuzz(kk, args.seed + round_, sealing)
                fuzz.setup()
                fuzz.run(per_round)
                stuck = fuzz.wait_settled(args.settle)
                scope = fuzz.out_of_scope()
                statuses = json.dumps([k.get("status") for k in kk.apikeys()])
                leaks = leaked(
                    fuzz,
                    {
                        "operator log": operator.log_text(),
                        "events": kk.all_events_text(),
                        "statuses": statuses,
                        "audit log": operator.audit_log.read_text(),
                    },
                )
                totals["specs"] += per_round
                totals["stuck"] += len(stuck)
                totals["out_of_scope"] += len(scope)
                totals["leaks"] += len(leaks)
                examples += [f"stuck {s}" for s in stuck[:3]] + scope[:3] + leaks[:3]
                for key, n in fuzz.admitted.items():
                    admitted[key] = admitted.get(key, 0) + n
                for key, n in fuzz.rejected.items():
                    rejected[key] = rejected.get(key, 0) + n
                print(
                    f"round {round_ + 1}/{args.rounds}: {per_round} specs, "
                    f"{len(stuck)} stuck, {len(scope)} out of scope, {len(leaks)} leaks",
                    flush=True,
                )
            found = crashes(operator.log_text())
            totals["crashes"] = len(found)
            examples += found[:5]
            alive = operator.alive()
    result = {
        "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
        **totals,
        "operator_alive": alive,
        "admitted": admitted,
        "rejected": rejected,
        "examples": examples,
    }
    print()
    print(f"{'specs applied':<28}{totals['specs']:>10}")
    print(f"{'admitted (by kind)':<28}{json.dumps(admitted):>10}")
    print(f"{'rejected at admission':<28}{json.dumps(rejected):>10}")
    for name in ("crashes", "stuck", "out_of_scope", "leaks"):
        print(f"{name:<28}{totals[name]:>10}")
    print(f"{'operator alive':<28}{alive!s:>10}")
    print(f"{'seed':<28}{args.seed:>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    problems = sum(totals[k] for k in ("crashes", "stuck", "out_of_scope", "leaks"))
    return 0 if alive and problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
