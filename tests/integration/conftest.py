"""The cluster fixtures live in tests/cluster.py (loaded by tests/conftest.py)."""

from tests.cluster import Leaks, api_client

__all__ = ["Leaks", "api_client"]
