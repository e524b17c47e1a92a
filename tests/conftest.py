from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from devtools.softhsm import Token, init_token


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    return init_token(Path(tmp_path_factory.mktemp("softhsm")))


# The real control plane and the operator under test, one of each per session, for
# tests/integration and tests/adversarial alike.
from tests.cluster import (  # noqa: E402
    admin,
    control_plane,
    kk,
    leaks,
    operator,
    pytest_runtest_makereport,
)

__all__ = [
    "admin",
    "control_plane",
    "kk",
    "leaks",
    "operator",
    "pytest_runtest_makereport",
    "softhsm_token",
]
