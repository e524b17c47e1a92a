"""`python -m tests.controlplane`: run the test control plane for a person (`make cluster`).

Starts upstream etcd + kube-apiserver with RBAC on and keykeeper's CRDs installed,
prints the KUBECONFIG to export, and keeps running until interrupted.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from tests.controlplane.launcher import ControlPlane


def main() -> int:
    plane = ControlPlane()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        plane.start()
        assert plane.admin is not None
        assert plane.bin is not None
        print(f"control plane ready in {plane.startup_seconds:.1f}s at {plane.server}")
        print(f"  export KUBECONFIG={plane.admin.kubeconfig}")
        print(f"  export PATH={plane.bin}:$PATH   # the matching kubectl")
        print(f"  logs: {Path(plane.logs)}")
        print("Ctrl-C stops it and removes its data.", flush=True)
        while plane.alive():
            time.sleep(1)
        print("a component exited:\n" + plane.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
