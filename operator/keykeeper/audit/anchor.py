"""Anchoring the audit log's head in the cluster, so a shortened log is detectable.

The Secret ``<operator namespace>/keykeeper-audit-anchor`` holds the sequence number
and MAC of the newest record, sealed with the audit key (``audit.Anchor``). The
operator writes it every ``INTERVAL`` seconds while the head moves, and at shutdown.
At start it compares the log with the anchor: a log that no longer reaches the
anchored record (truncated, emptied, rolled back, or a volume that was lost) is
recorded with an ``AuditGap`` record and a warning, and the chain goes on.

With leader election the check runs when a replica becomes the leader. The anchor
names its writer; an anchor written by *another* replica whose record this file does
not hold is a handoff, not a loss: the new leader continues the chain after it with
an ``AuditHandoff`` record (``AuditLog.continue_from``). The anchor's writer is sealed
with it, so a forged handoff is as detectable as a forged head.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from keykeeper.api import labels, timestamps
from keykeeper.api.models import SecretType
from keykeeper.api.reasons import Reason
from keykeeper.api.timestamps import rfc3339
from keykeeper.audit.chain import Anchor
from keykeeper.audit.log import AuditLog
from keykeeper.kube.client import Conflict, Kube
from keykeeper.kube.paths import secret_path
from keykeeper.types import Body

log = logging.getLogger("keykeeper.anchor")

ANCHOR_SECRET = "keykeeper-audit-anchor"  # noqa: S105 - a Secret name
INTERVAL = 10.0
ANCHORED_AT = "keykeeper.dev/audit-anchored-at"


def parse(body: Body | None) -> Anchor | None:
    annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return Anchor(
            int(annotations["keykeeper.dev/audit-seq"]),
            str(annotations["keykeeper.dev/audit-mac"]),
            str(annotations["keykeeper.dev/audit-seal"]),
            str(annotations.get("keykeeper.dev/audit-writer", "")),
            str(annotations.get(ANCHORED_AT, "")),
        )
    except (KeyError, ValueError):
        return None


def describe(anchor: Anchor, now: datetime | None = None) -> str:
    """One line for ``audit verify``: which record, which writer, how old."""
    writer = anchor.writer or "a single replica"
    if not anchor.at:
        return f"anchor: record {anchor.seq}, written by {writer} (no date: before 0.5)"
    try:
        age = ((now or datetime.now(UTC)) - timestamps.parse(anchor.at)).total_seconds()
    except ValueError:
        return f"anchor: record {anchor.seq}, written by {writer} (unreadable date)"
    return f"anchor: record {anchor.seq}, written by {writer} at {anchor.at} ({age:.0f} s ago)"


async def read(kube: Kube, namespace: str) -> Anchor | None:
    return parse(await kube.get_secret(namespace, ANCHOR_SECRET))


class Anchorer:
    def __init__(
        self, kube: Kube, namespace: str, audit: AuditLog, key: bytes, writer: str = ""
    ) -> None:
        self._kube, self._namespace, self._audit, self._key = kube, namespace, audit, key
        self._writer = writer
        self._anchored: tuple[int, str] | None = None
        self._in_step_at: float | None = None  # monotonic: when the anchor last covered the head
        self._resource_version: str | None = None
        # another replica's authentic anchor is ahead of this one's head: it leads now
        self.superseded = False
        self._soon = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def check_at_start(self) -> None:
        """Compare the log with the last anchor; record a gap if the log lost records."""
        found = await self._kube.get_secret(self._namespace, ANCHOR_SECRET)
        self._resource_version = (found or {}).get("metadata", {}).get("resourceVersion")
        anchor = parse(found)
        if anchor is None:
            return
        seq, _ = self._audit.head()
        if not anchor.authentic(self._key):
            problem = "the anchor in the cluster is not authentic"
        elif anchor.writer and anchor.writer != self._writer:
            record = await asyncio.to_thread(self._audit.segments.find, anchor.seq)
            if record is not None and record.get("mac") == anchor.mac:
                self._anchored = (anchor.seq, anchor.mac)
                return
            self._audit.continue_from(
                anchor,
                f"the chain continues from record {anchor.seq} (mac {anchor.mac}) "
                f"in the log of {anchor.writer}",
            )
            log.info("audit log continues after %s's record %d", anchor.writer, anchor.seq)
            return
        elif seq < anchor.seq:
            problem = f"records {seq + 1}..{anchor.seq} are missing (the log was truncated)"
        else:
            record = await asyncio.to_thread(self._audit.segments.find, anchor.seq)
            if record is not None and record.get("mac") == anchor.mac:
                self._anchored = (anchor.seq, anchor.mac)  # a restart re-anchors nothing
                return
            problem = f"record {anchor.seq} is not the anchored one (the log was replaced)"
        log.warning("audit log %s: %s", self._audit.path, problem)
        self._audit.append(Reason.AUDIT_GAP, detail=problem)

    async def anchor(self, *, retried: bool = False) -> None:
        """Write the head if it moved since the last anchor. A conflict (someone wrote the
        Secret since it was read) re-reads it: an authentic anchor ahead of this head by
        another writer means another replica leads, and this one stops anchoring; anything
        else is retried once with the fresh resourceVersion, so one foreign write never
        stops anchoring for good (a stale anchor would let a truncation pass verify)."""
        head = self._audit.head()
        if head == self._anchored or head[0] == 0:
            self._in_step_at = time.monotonic()  # nothing new: the anchor covers the head
            return
        if self.superseded:
            return
        at = rfc3339(datetime.now(UTC))
        sealed = Anchor.of(self._key, *head, writer=self._writer, at=at)
        body: Body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": SecretType.AUDIT_ANCHOR,
            "metadata": {
                "name": ANCHOR_SECRET,
                "namespace": self._namespace,
                "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: "audit-anchor"},
                "annotations": {
                    "keykeeper.dev/audit-seq": str(sealed.seq),
                    "keykeeper.dev/audit-mac": sealed.mac,
                    "keykeeper.dev/audit-seal": sealed.seal,
                    "keykeeper.dev/audit-writer": sealed.writer,
                    ANCHORED_AT: sealed.at,
                },
            },
        }
        if self._resource_version is None:
            try:
                written = await self._kube.create(secret_path(self._namespace), body)
            except Conflict:
                found = await self._kube.get_secret(self._namespace, ANCHOR_SECRET)
                self._resource_version = (found or {}).get("metadata", {}).get("resourceVersion")
                return await self.anchor()
        else:
            body["metadata"]["resourceVersion"] = self._resource_version
            try:
                written = await self._kube.replace(
                    secret_path(self._namespace, ANCHOR_SECRET), body
                )
            except Conflict:
                if retried or await self._superseded_by_another(head[0]):
                    raise
                return await self.anchor(retried=True)
        self._resource_version = written["metadata"]["resourceVersion"]
        self._anchored = head
        self._in_step_at = time.monotonic()

    def age(self) -> float:
        """Seconds since the anchor last covered the log's head (0 before the first try):
        it grows while anchoring fails, and an alert on it catches a stalled anchor."""
        return 0.0 if self._in_step_at is None else time.monotonic() - self._in_step_at

    def unanchored(self) -> int:
        """Records written since the last anchor (a truncation of these would pass verify)."""
        return self._audit.head()[0] - (self._anchored[0] if self._anchored else 0)

    async def _superseded_by_another(self, seq: int) -> bool:
        """After a conflict: the anchor as it is now, and whether another replica leads."""
        found = await self._kube.get_secret(self._namespace, ANCHOR_SECRET)
        self._resource_version = (found or {}).get("metadata", {}).get("resourceVersion")
        there = parse(found)
        if (
            there is not None
            and there.authentic(self._key)
            and there.writer != self._writer
            and there.seq >= seq
        ):
            self.superseded = True
            log.warning(
                "the audit anchor is %s's (seq %d, ahead of this replica's %d): another replica "
                "leads, so this one stops anchoring",
                there.writer,
                there.seq,
                seq,
            )
        return self.superseded

    def soon(self) -> None:
        """Anchor now, not at the next tick (the log closed a segment); any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._soon.set)

    async def run(self, interval: float = INTERVAL) -> None:
        self._loop = asyncio.get_running_loop()
        while not self.superseded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._soon.wait(), interval)
            self._soon.clear()
            try:
                await self.anchor()
            except Exception as exc:  # an anchor is retried at the next tick
                log.warning("could not anchor the audit log: %s", exc)
