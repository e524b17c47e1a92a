"""Kubernetes Events: the short-lived half of the audit trail (the log is the other).

Reasons are the closed set of ``api.reasons`` (DESIGN.md §5). Messages name resources, versions and
fingerprints; they are built only from those, never from values.

Events are rate-limited per object (a token bucket, as client-go's spam filter does):
a tenant who flaps a key, or a selector over thousands of namespaces, cannot make the
operator flood the apiserver with Events. What is dropped is still in the audit log.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from keykeeper.api.timestamps import rfc3339
from keykeeper.errors import KeykeeperError
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import events_path

log = logging.getLogger("keykeeper.events")


BURST = 25  # Events an object may get at once
REFILL_SECONDS = 30.0  # then one more per this many seconds


class EventSink:
    def __init__(
        self, kube: Kube, instance: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._kube = kube
        self._instance = instance
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # uid -> (tokens, at)
        self.dropped = 0

    def _allow(self, uid: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.get(uid, (float(BURST), now))
        tokens = min(float(BURST), tokens + (now - at) / REFILL_SECONDS)
        if tokens < 1.0:
            self._buckets[uid] = (tokens, now)
            return False
        self._buckets[uid] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget full buckets of objects long quiet
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < BURST - 1}
        return True

    async def emit(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        if not self._allow(str(meta.get("uid") or meta.get("name"))):
            self.dropped += 1
            log.debug("event %s for %s dropped by the rate limit", reason, meta.get("name"))
            return
        namespace = meta.get("namespace") or "default"
        now = rfc3339(datetime.now(UTC))
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "keykeeper"},
            "reportingComponent": "keykeeper.dev/operator",
            "reportingInstance": self._instance,
            "action": reason,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._kube.create(events_path(namespace), event)
        except KeykeeperError as exc:  # an Event is best effort; the audit log is not
            log.warning("could not post event %s for %s: %s", reason, meta.get("name"), exc)
