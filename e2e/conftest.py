"""The e2e suite's cluster: the real control plane plus a kube-controller-manager
(both from the pinned Kubernetes module), a node agent running Pods as local processes
from the Dockerfile-built venv, and helm (from its Go module). One cluster for the
session; the tests in test_install.py run in order against one release."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from devtools.e2e import (
    IMAGE,
    Helm,
    restricted_namespace,
    start_controller_manager,
    tools,
)
from devtools.e2e.image import build
from devtools.e2e.node import NodeAgent
from devtools.kk import Cluster, api_client


@pytest.fixture(scope="session")
def e2e_tools() -> Path:
    return tools()


@pytest.fixture(scope="session")
def image_root() -> Path:
    """A fresh venv from the Dockerfile's build steps (about a minute)."""
    return build()


@pytest.fixture(scope="session")
def plane(e2e_tools: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(crds=None).start()  # the chart installs the CRDs
    try:
        start_controller_manager(cp, e2e_tools)
        restricted_namespace(cp)
        yield cp
    finally:
        if os.environ.get("KEYKEEPER_KEEP_CLUSTER"):
            print(f"cluster kept: {cp.workdir}")
        cp.stop()


@pytest.fixture(scope="session")
def agent(plane: ControlPlane, image_root: Path) -> Iterator[NodeAgent]:
    node = NodeAgent(plane, {IMAGE: image_root}, plane.workdir / "node").start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def helm(e2e_tools: Path, plane: ControlPlane) -> Helm:
    return Helm(e2e_tools / "helm", plane)


@pytest.fixture(scope="session")
def kk(plane: ControlPlane) -> Cluster:
    assert plane.admin is not None
    return Cluster(api_client(plane.admin))
