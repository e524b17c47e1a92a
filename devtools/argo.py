"""Argo Rollouts' own CRD (``argoproj.io/v1alpha1 Rollout``), from its Go module on the
module proxy (``go mod download``: cached in the module cache), for the tests of
rollout restarts of Rollouts. No Argo controller runs: what keykeeper does to a Rollout
(``spec.restartAt`` and its stamp) is what the tests look at, through the real schema."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from devtools.controlplane import ControlPlane

MODULE = "github.com/argoproj/argo-rollouts"
VERSION = "v1.8.3"
CRD_NAME = "rollouts.argoproj.io"


def rollout_crd() -> Path:
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return Path(json.loads(done.stdout)["Dir"]) / "manifests" / "crds" / "rollout-crd.yaml"


def install_rollout_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(rollout_crd()))

    def established() -> bool:  # `kubectl wait` fails on a CRD that has no status yet
        crd = json.loads(plane.kubectl("get", f"crd/{CRD_NAME}", "-o", "json"))
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    deadline = time.monotonic() + 60
    while not established():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{CRD_NAME} not Established after 60 s")
        time.sleep(0.2)
