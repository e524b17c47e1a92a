"""Reading a KeyPolicy's credentials Secret for its key provider.

The one read of a Secret's data on behalf of a provider: its identity is checked, and
the resourceVersion travels with the data so that a rotated credential builds a new
client (``providers.cache``).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from keykeeper.kube.client import Kube

Credentials = tuple[dict[str, str], str]  # the Secret's data as text, its resourceVersion


def credentials_reader(kube: Kube) -> Callable[[str, str], Awaitable[Credentials | None]]:
    """A ``providers.cache.CredentialsReader`` over ``kube``."""

    async def read(namespace: str, name: str) -> Credentials | None:
        found = await kube.get_secret(namespace, name)
        if found is None:
            return None
        data = {
            key: base64.b64decode(value).decode("utf-8", "replace")
            for key, value in (found.get("data") or {}).items()
        }
        return data, str(found["metadata"].get("resourceVersion", ""))

    return read
