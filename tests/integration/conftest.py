"""The cluster fixtures live in tests/cluster.py (loaded by tests/conftest.py)."""

from devtools.kk import api_client

from tests.cluster import Leaks

__all__ = ["Leaks", "api_client"]
