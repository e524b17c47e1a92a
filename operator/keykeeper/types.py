"""The shared aliases, defined once: what every layer calls an object body, a key's
reference, and the place of a projected Secret."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]  # a Kubernetes object as the API returns it (JSON, no client types)
KeyRef = tuple[str, str]  # an ApiKey: (namespace, name)
Slot = tuple[str, str]  # a projected Secret: (namespace, Secret name)
