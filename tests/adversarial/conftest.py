"""The attacker every adversarial test plays: a tenant with namespace rights only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster
from devtools.operator import Operator

from tests.adversarial.tenant import Tenant, tenant


@pytest.fixture
def attacker(control_plane: ControlPlane, kk: Cluster, operator: Operator) -> Iterator[Tenant]:
    with tenant(control_plane, kk) as found:
        yield found
