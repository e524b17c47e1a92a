"""`python -m devtools.controlplane`: the control plane (and keykeeper) for a person.

make cluster   upstream etcd + kube-apiserver, RBAC on, keykeeper's CRDs installed;
               prints the KUBECONFIG to export and runs until interrupted.
make dev       the same, installed the way a cluster gets it: a kube-controller-manager
               and a real node (kubelet, kube-proxy, scheduler, containerd, runc)
               join the control plane, the image is built from the Dockerfile by
               buildah and imported into the node, and `helm install` puts the chart
               (two replicas, one leading, Pod Security restricted) into
               keykeeper-system; then examples/ are applied and the projected
               Secrets, the denied request and the Events are shown; runs until
               interrupted (--once: exits instead).
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
    # --dev: the chart installs the CRDs, and the apiserver serves a node
    plane = ControlPlane(crds=None, serve_nodes=True) if args.dev else ControlPlane()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    agent = None
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
            agent = run_dev(plane)
        if args.once:
            print("\n--once: stopping the control plane and the operator's Pods.")
            return 0
        print(f"\n  export KUBECONFIG={plane.admin.kubeconfig}")
        print(f"  export PATH={plane.bin}:$PATH   # the matching kubectl")
        print(f"  logs: {plane.logs}" + (f", the node's: {agent.procs.logs}" if agent else ""))
        print("Ctrl-C stops it and removes its data.", flush=True)
        while plane.alive() and (agent is None or agent.procs.alive()):
            time.sleep(1)
        print("a component exited:\n" + plane.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if agent is not None:
            agent.stop()
        plane.stop()


def run_dev(plane: ControlPlane):  # type: ignore[no-untyped-def]
    from devtools import image
    from devtools.e2e import (
        CHART,
        NAMESPACE,
        Helm,
        restricted_namespace,
        start_controller_manager,
        tools,
    )
    from devtools.node import Node
    from devtools.operator import wait_for

    bin_dir = tools()
    start_controller_manager(plane, bin_dir)
    print("building the image from the Dockerfile with buildah (layers cached by its inputs)...")
    built = image.build()
    print("starting a node: kubelet, kube-proxy, kube-scheduler, containerd, runc...")
    agent = Node(plane, Path(tempfile.mkdtemp(prefix="keykeeper-dev-node-")))
    try:
        agent.start(images=(built.archive,))
    except BaseException:
        agent.stop()
        raise
    restricted_namespace(plane)
    helm = Helm(bin_dir / "helm", plane)
    print(f"\n== helm install keykeeper charts/keykeeper -n {NAMESPACE} --wait")
    print(helm("install", "keykeeper", str(CHART), "-n", NAMESPACE, "--wait").stdout, end="")
    print(plane.kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide"), end="")
    print(plane.kubectl("get", "nodes", "-o", "wide"), end="")
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
        (
            "Which replica leads",
            [
                "get",
                "lease",
                "-n",
                NAMESPACE,
                "keykeeper-leader",
                "-o",
                "jsonpath={.spec.holderIdentity}{'\\n'}",
            ],
        ),
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
    return agent


if __name__ == "__main__":
    sys.exit(main())
