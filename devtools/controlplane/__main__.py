"""`python -m devtools.controlplane`: the control plane (and keykeeper) for a person.

make cluster   upstream etcd + kube-apiserver, RBAC on, keykeeper's CRDs installed;
               prints the KUBECONFIG to export and runs until interrupted.
make dev       the same, plus the operator (local provider, shipped RBAC) and
               examples/ applied; shows the projected Secrets, the denied request
               and the Events, then runs until interrupted (--once: exits instead).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from devtools.controlplane.launcher import REPO, ControlPlane


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.controlplane")
    parser.add_argument("--dev", action="store_true", help="also run keykeeper and apply examples/")
    parser.add_argument("--once", action="store_true", help="with --dev: show the result and exit")
    args = parser.parse_args()
    plane = ControlPlane()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    operator = None
    try:
        plane.start()
        assert plane.admin is not None
        assert plane.bin is not None
        print(
            f"control plane (kube-apiserver {plane.kubectl('version', '-o', 'yaml').split('gitVersion: ')[-1].splitlines()[0]}) "
            f"ready in {plane.startup_seconds:.1f}s at {plane.server}",
            flush=True,
        )
        if args.dev:
            operator = run_dev(plane)
        if args.once:
            print("\n--once: stopping the control plane and the operator.")
            return 0
        print(f"\n  export KUBECONFIG={plane.admin.kubeconfig}")
        print(f"  export PATH={plane.bin}:$PATH   # the matching kubectl")
        print(f"  logs: {plane.logs}" + (f", operator: {operator.log}" if operator else ""))
        print("Ctrl-C stops it and removes its data.", flush=True)
        while plane.alive() and (operator is None or operator.alive()):
            time.sleep(1)
        print("a component exited:\n" + plane.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()


def run_dev(plane: ControlPlane):  # type: ignore[no-untyped-def]
    from devtools.operator import Operator, wait_for

    operator = Operator(plane, Path(tempfile.mkdtemp(prefix="keykeeper-dev-")))
    operator.install()
    operator.start()
    print("keykeeper operator started (local provider, ServiceAccount keykeeper-system/keykeeper)")
    examples = REPO / "examples"
    print(plane.kubectl("apply", "-f", str(examples)), end="")

    def settled() -> bool:
        out = plane.kubectl(
            "get",
            "apikey",
            "-n",
            "payments",
            "stripe",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return out.strip() == "True"

    wait_for(settled, timeout=60, what="the example ApiKey to be Ready")
    time.sleep(1)
    show = [
        ("The ApiKey and its policy", ["get", "keypolicy,apikey", "-A"]),
        (
            "Projected Secrets (values never printed here)",
            [
                "get",
                "secrets",
                "-A",
                "-l",
                "keykeeper.dev/role=projection",
            ],
        ),
        (
            "Where the key went, and where it was denied",
            [
                "get",
                "apikey",
                "-n",
                "payments",
                "stripe",
                "-o",
                "jsonpath={range .status.projections[*]}{.namespace}/{.secretName}: {.state} {.reason}{'\\n'}{end}",
            ],
        ),
        ("Events", ["get", "events", "-n", "payments", "--sort-by=.lastTimestamp"]),
    ]
    for title, command in show:
        print(f"\n== {title}: kubectl {' '.join(command)}")
        print(plane.kubectl(*command), end="")
    value = plane.kubectl(
        "get", "secret", "-n", "payments-api", "stripe-api-key", "-o", "jsonpath={.data.api-key}"
    )
    print(
        f"\n== the projected value in payments-api/stripe-api-key is {len(value)} base64 characters "
        "(read it with: kubectl get secret -n payments-api stripe-api-key -o jsonpath='{.data.api-key}' | base64 -d)"
    )
    return operator


if __name__ == "__main__":
    sys.exit(main())
