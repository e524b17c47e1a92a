"""Revoked values stay dead: a tombstone of every revoked value, cluster-wide.

When a key is revoked, the tombstones of all its versions (``Keyring.tombstone``: an
HMAC under its own subkey, the same for the same value whatever key holds it) are added
to the Secret ``<ns>/keykeeper-revocations``. Before a user-supplied value (sealed or
imported) is stored, under any namespace and name, it is looked up there, and a match
is refused (``RevokedValue``): re-applying a revoked key's manifest from git, after a
delete, or sealing the same value under a new name, serves nothing.

Entries are kept for ``RETENTION`` (400 days, longer than the default sealing cutoff
of 365 days after which the sealed text no longer opens anyway) and at most
``MAX_ENTRIES`` of them (about 0.9 MiB), the oldest dropped first. Tombstones never
leave this Secret: not in status, Events, logs or audit records.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from keykeeper.api import labels, timestamps
from keykeeper.api.timestamps import rfc3339
from keykeeper.errors import Conflict, IntegrityError, RevokedValue
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import secret_path
from keykeeper.types import Body

log = logging.getLogger("keykeeper.revocations")

REVOCATIONS_SECRET = "keykeeper-revocations"  # noqa: S105 - a Secret name
DATA_KEY = "tombstones.json"
RETENTION = timedelta(days=400)
MAX_ENTRIES = 12_000
_ATTEMPTS = 5


class Revocations:
    def __init__(self, kube: Kube, namespace: str, clock: Callable[[], datetime]) -> None:
        self.kube, self.namespace, self.clock = kube, namespace, clock

    async def check(self, tombstone: str) -> None:
        """:class:`RevokedValue` if ``tombstone`` is a revoked value's."""
        found = await self.kube.get_secret(self.namespace, REVOCATIONS_SECRET)
        if found is not None and tombstone in _entries(found):
            raise RevokedValue(
                "the value was revoked (in this or another ApiKey) and is never served "
                "again; supply a new value"
            )

    async def record(self, tombstones: Iterable[str]) -> None:
        """Add ``tombstones``, dated now (a conflicting write is read again and retried)."""
        new = sorted(set(tombstones))
        if not new:
            return
        for attempt in range(_ATTEMPTS):
            found = await self.kube.get_secret(self.namespace, REVOCATIONS_SECRET)
            entries = _entries(found) if found is not None else {}
            now = rfc3339(self.clock())
            entries.update({t: entries.get(t, now) for t in new})
            body = self._body(self._pruned(entries), found)
            try:
                if found is None:
                    await self.kube.create(secret_path(self.namespace), body)
                else:
                    await self.kube.replace(secret_path(self.namespace, REVOCATIONS_SECRET), body)
                return
            except Conflict:
                if attempt == _ATTEMPTS - 1:
                    raise

    def _pruned(self, entries: dict[str, str]) -> dict[str, str]:
        cutoff = self.clock() - RETENTION
        kept = sorted(((at, t) for t, at in entries.items() if _parsed(at) >= cutoff), reverse=True)
        if len(kept) > MAX_ENTRIES:
            log.warning(
                "more than %d revoked values are remembered; the oldest are forgotten",
                MAX_ENTRIES,
            )
        return {t: at for at, t in kept[:MAX_ENTRIES]}

    def _body(self, entries: dict[str, str], found: Body | None) -> Body:
        metadata: dict[str, object] = {
            "name": REVOCATIONS_SECRET,
            "namespace": self.namespace,
            "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: labels.ROLE_REVOCATIONS},
        }
        if found is not None:
            metadata["resourceVersion"] = found["metadata"]["resourceVersion"]
        raw = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": metadata,
            "data": {DATA_KEY: base64.b64encode(raw).decode()},
        }


def _entries(body: Body) -> dict[str, str]:
    """The recorded tombstones; an unreadable Secret is an error, never an empty set."""
    encoded = (body.get("data") or {}).get(DATA_KEY)
    if encoded is None:
        return {}
    try:
        found = json.loads(base64.b64decode(encoded))
    except (ValueError, binascii.Error):
        found = None
    if not isinstance(found, dict):
        raise IntegrityError(f"the Secret {REVOCATIONS_SECRET} is unreadable; nothing is stored")
    return {str(k): str(v) for k, v in found.items()}


def _parsed(text: str) -> datetime:
    """An entry's date; an unreadable one is kept (never forgotten by accident)."""
    try:
        return timestamps.parse(text)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
