from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.softhsm import Token, init_token


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    return init_token(Path(tmp_path_factory.mktemp("softhsm")))
