"""Finding K3 — crafted ApiKeys exhaust the operator's memory, no policy needed.

ApiKeys with the largest selectors the CRD admits, under a policy that does not exist,
cost the operator nothing it needs: they can never be projected anywhere. The world
kept each one's body and parsed spec and indexed its selectors anyway, and a restart
held them all at once (the start-up list in one response, kopf's first list in one
page, and every per-key kopf worker keeping its last event for 5 s), memory the process
then kept. Now a key no policy admits is kept as its name, policy and status only (a
policy that comes to admit it has it read again), lists come in pages of 100, kopf's
idle workers let go after 0.5 s, and the start-up garbage is given back.

The figure: the operator's resident memory after a restart with ``CRAFTED`` such keys,
against a restart without them, on the same operator in the same test.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from devtools.kk import Cluster, apikey, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant

pytestmark = pytest.mark.cluster

CRAFTED = 600
# what all of them may add to the operator's RSS after a restart (~85 KiB a key): before
# K3's fixes they added 88 MiB (150 KiB a key), now about 32 MiB (54 KiB a key)
BUDGET_KIB = 50 * 1024


def crafted(namespace: str, n: int) -> dict[str, object]:
    values = [f"{n:05d}-{v:02d}-" + "x" * 52 for v in range(32)]  # 63 characters, 256 in all
    projections = [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": op, "values": values}
                ]
            },
            "secretName": f"s{i}",
        }
        for i, op in enumerate(["In", "NotIn"] * 4)
    ]
    return apikey(namespace, f"crafted-{n}", unique("no-such-policy"), projections=projections)


def memory_kib(operator: Operator) -> dict[str, int]:
    assert operator.proc is not None
    with open(f"/proc/{operator.proc.pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def restarted(operator: Operator, kk: Cluster) -> dict[str, int]:
    """The operator's memory once a restart has loaded the world and reconciled it all."""
    operator.stop()
    operator.start()
    ready = operator.liveness.replace("/healthz", "/readyz")
    wait_for(
        lambda: urllib.request.urlopen(ready, timeout=2).status == 200, timeout=90, what="ready"
    )

    def drained() -> bool:
        with urllib.request.urlopen(operator.metrics, timeout=2) as answer:
            text = answer.read().decode()
        depth = [ln for ln in text.splitlines() if ln.startswith("keykeeper_workqueue_depth")]
        return bool(depth) and all(float(ln.split()[-1]) == 0 for ln in depth)

    wait_for(drained, timeout=120, interval=0.5, what="the start-up sweep done")
    # kopf handles its own first list of every key after that, each in a worker that
    # lingers 5 s: settled when the RSS has not moved for 6 s
    samples = [memory_kib(operator)["VmRSS"]]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(2)
        samples.append(memory_kib(operator)["VmRSS"])
        if len(samples) >= 4 and max(samples[-4:]) - min(samples[-4:]) < 1024:
            break
    return memory_kib(operator)


def test_keys_no_policy_admits_cost_the_operator_no_memory_to_speak_of(
    operator: Operator, attacker: Tenant, kk: Cluster
) -> None:
    home = attacker.namespace
    without = restarted(operator, kk)
    for n in range(CRAFTED):
        attacker.kk.create(crafted(home, n))
    wait_for(
        lambda: (
            sum(1 for k in kk.apikeys() if k["metadata"]["namespace"] == home and k.get("status"))
            == CRAFTED
        ),
        timeout=180,
        interval=1,
        what="every crafted key seen (PolicyNotFound)",
    )
    with_them = restarted(operator, kk)
    grown = with_them["VmRSS"] - without["VmRSS"]
    print(
        f"\nK3: {CRAFTED} crafted keys: RSS {without['VmRSS'] / 1024:.1f} -> "
        f"{with_them['VmRSS'] / 1024:.1f} MiB (+{grown / 1024:.1f} MiB, "
        f"{grown / CRAFTED:.1f} KiB a key); peak {with_them['VmHWM'] / 1024:.1f} MiB"
    )
    assert grown < BUDGET_KIB, f"{CRAFTED} crafted keys took {grown} KiB"
