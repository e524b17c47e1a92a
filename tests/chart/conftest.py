from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from devtools.e2e import tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "keykeeper"

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    return tools() / "helm"


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "HELM_CACHE_HOME": "/tmp/helm-cache"},
    )


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    def render(*sets: str, namespace: str = "keykeeper-system") -> list[dict[str, Any]]:
        args = ["template", "keykeeper", str(CHART), "-n", namespace]
        for item in sets:
            args += ["--set", item]
        done = run_helm(helm, *args)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return render
