"""The README's main-job command (`make dev`), run as a new user would, to its end:
through the Helm chart, with two replicas on a real node (kubelet, containerd)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def test_make_dev_shows_the_projected_and_the_denied() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devtools.controlplane", "--dev", "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "helm install keykeeper charts/keykeeper" in out
    assert "STATUS: deployed" in out, "through the chart, as a cluster gets it"
    assert out.count(" Running ") >= 2, "two replicas"
    assert "keykeeper-" in out.split("Which replica leads")[1]
    assert re.search(r"apikey.keykeeper.dev/stripe +Active", out), "the example key"
    assert "payments-api/stripe-api-key: Projected" in out
    assert "checkout/stripe: Projected" in out
    assert "marketing/stripe: Denied NotAuthorizedByPolicy" in out
    assert "ProjectionDenied" in out
    assert "kk_" not in out  # the value itself is never printed
