"""The tamper-evident audit log: HMAC-chained JSON lines.

Events expire (an hour by default), so every action also appends one line::

    {"seq": 7, "ts": "...", "action": "Projected", "namespace": "payments",
     "name": "stripe", "uid": "...", "version": 3, "kmsKeyId": "...",
     "fingerprint": "hmac-sha256:...", "detail": "payments-api/stripe-api-key",
     "prev": "<mac of record 6>", "mac": "<hex HMAC-SHA256>"}

``mac = HMAC(audit key, canonical JSON of the record without "mac")`` (``audit.chain``).
Each record names the MAC of the one before (``prev``; 64 zeros for the first), so
removing, reordering, inserting or editing a record breaks the chain at that point,
and only the holder of the audit key (a subkey of the master key) can write a valid
record. Records carry fingerprints, each key's own (``Keyring.shown``: equal values
under two keys show different fingerprints), never values.

The chain alone cannot tell a log whose newest records were dropped (or that was
emptied) from a shorter one. So the head (seq and MAC of the last record) is anchored
outside the file, in the cluster (``audit.anchor``), regularly and at shutdown;
``chain.verify`` with it reports truncation, rollback and emptying (records newer
than the last anchor can still be dropped unseen).

With several replicas each leader writes its own file (its own volume). The anchor
names the replica that wrote it; a new leader whose file does not hold the anchored
record continues the cluster's chain with an ``AuditHandoff`` record: the next
sequence number after the anchored one, ``prev`` still linking to its own file's last
record (so its file's chain stays whole), and the anchored head in ``detail``. The
only jump ``verify`` accepts is a handoff's, forward.

The file is closed at a size and a new one begun with an ``AuditSegment`` record that
links to the closed one (``audit.segments``); only the newest segments are kept, and
removing one is recorded (``AuditPruned``).

Each record can also be written to stdout as one JSON line ``{"audit": record}`` for
a log shipper: the same bytes, verifiable with the same key."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from keykeeper.api.reasons import Reason
from keykeeper.audit.chain import GENESIS, Anchor, canonical, mac_of
from keykeeper.audit.groupsync import GroupSync
from keykeeper.audit.reserve import Reserve
from keykeeper.audit.segments import KEPT, SEGMENT_BYTES, Segments, last_verified, write_private
from keykeeper.errors import AuditWriteError

log = logging.getLogger("keykeeper.audit")

SEGMENT_RECORDS = {Reason.AUDIT_SEGMENT, Reason.AUDIT_PRUNED}  # never close a segment
GAP_LIMIT = 1000  # withdrawals named in one AuditGap record; the rest are counted


class AuditLog:
    """Appends chained records to a file; safe to call from several threads.

    Every record is written with one ``write`` whose byte count is checked and then
    ``fdatasync``-ed before ``append`` returns, and callers append *before* the action
    a record announces: if the record cannot be written, the action is not taken, unless
    it is a withdrawal (``remember``: named in an ``AuditGap`` record later).
    At start the tail's MAC is checked; a torn or altered tail is moved to a
    quarantine file beside the log and a ``AuditGap`` record says so, so the chain
    continues from the last record that verifies.
    """

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        fsync: bool = True,
        mirror: TextIO | None = None,
        shown: Callable[[str, str], str] = lambda uid, fingerprint: fingerprint,
        segment_bytes: int = SEGMENT_BYTES,
        kept: int = KEPT,
    ) -> None:
        self.path = path
        self._key = key
        self._shown = shown  # (key uid, fingerprint) -> the key's own (``Keyring.shown``)
        self._fsync = fsync
        self._mirror = mirror  # stdout, for log shippers
        self._lock = threading.Lock()
        self.durable = GroupSync(self._datasync, lambda: self._seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev = 0, GENESIS
        self.reserve = Reserve(path.with_name(path.name + ".reserve"))
        self.failures = 0  # records that could not be written, in this process
        self._gaps: list[str] = []  # withdrawals taken without their record (remember)
        self._gaps_dropped = 0
        self.segments = Segments(path, segment_bytes, kept)
        self.on_segment: Callable[[], None] | None = None  # a segment closed: anchor soon
        self._begun: str | None = None  # the record that begins the open file, still to write
        self._size = 0
        quarantined = self._recover()
        if quarantined is not None:
            self.append(
                Reason.AUDIT_GAP,
                detail=f"a torn or unverifiable tail ({quarantined[1]} bytes) was moved to "
                f"{quarantined[0].name}",
            )

    def _datasync(self) -> None:
        if not self._fsync:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditWriteError(f"audit log {self.path}: {exc.strerror}") from None

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._seq, self._prev

    def _recover(self) -> tuple[Path, int] | None:
        """Find the last record that verifies; quarantine whatever follows it."""
        data = self.path.read_bytes() if self.path.exists() else b""
        found = last_verified(data, self._key)
        if found is not None:
            end, self._seq, self._prev = found
        else:  # nothing verifies here: the chain goes on from the newest closed segment
            end, head = 0, self.segments.newest_head(self._key)
            if head is not None:
                self._seq, self._prev = head
                self._begun = f"follows the closed segment ending at record {head[0]}"
        self._size = end
        if not data:
            return None
        good = data[:end] if end == 0 or data[end - 1 : end] == b"\n" else data[:end] + b"\n"
        rest = data[end:]
        if not rest.strip():
            return None
        quarantine = self.path.with_name(
            f"{self.path.name}.quarantined-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        )
        write_private(quarantine, rest)
        tmp = self.path.with_name(self.path.name + ".tmp")
        write_private(tmp, good)
        os.replace(tmp, self.path)
        log.warning(
            "audit log %s: %d bytes after the last verifiable record moved to %s",
            self.path,
            len(rest),
            quarantine,
        )
        return quarantine, len(rest)

    def append(
        self,
        action: str,
        *,
        namespace: str = "",
        name: str = "",
        uid: str = "",
        version: int | None = None,
        kms_key_id: str = "",
        fingerprint: str = "",
        detail: str = "",
        now: datetime | None = None,
        sync: bool = True,
        seq: int | None = None,
    ) -> dict[str, Any]:
        """Append one record; with ``sync`` (the default) it is on disk on return, without
        it the caller awaits ``durable.durable(record["seq"])`` before acting. ``seq`` is
        for ``continue_from`` only. Withdrawals taken while the log could not be written
        (``remember``) are named first, in one ``AuditGap`` record."""
        shown = self._shown(uid, fingerprint) if fingerprint else ""
        fields = _fields(action, namespace, name, uid, version, kms_key_id, shown, detail)
        with self._lock:
            if self._begun is not None:
                self._write(_fields(Reason.AUDIT_SEGMENT, detail=self._begun), now, sync=False)
                self._begun = None
            if self._gaps:
                untold = f"; {self._gaps_dropped} more" if self._gaps_dropped else ""
                gap = "taken while the log could not be written: " + "; ".join(self._gaps)
                self._write(_fields(Reason.AUDIT_GAP, detail=gap + untold), now, sync=False)
                self._gaps, self._gaps_dropped = [], 0
            return self._write(fields, now, sync=sync, seq=seq)

    def remember(self, action: str, *, namespace: str, name: str, uid: str, detail: str) -> None:
        """A withdrawal taken although its record could not be written (finding K9): told
        in the operator's log now, and in an ``AuditGap`` record once the log takes
        records again. Withdrawing never waits for the disk; exposing does."""
        what = f"{action} {namespace}/{name} (uid {uid}) {detail}"
        with self._lock:
            if len(self._gaps) < GAP_LIMIT:
                self._gaps.append(what)
            else:
                self._gaps_dropped += 1
        log.error("audit log %s cannot be written: %s taken without its record", self.path, what)

    def _write(
        self, fields: dict[str, Any], now: datetime | None, *, sync: bool, seq: int | None = None
    ) -> dict[str, Any]:
        """One record, chained to the last (``_lock`` held)."""
        record: dict[str, Any] = {
            "seq": self._seq + 1 if seq is None else seq,
            "ts": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
            **fields,
            "prev": self._prev,
        }
        record["mac"] = mac_of(self._key, record)
        line = canonical(record) + b"\n"
        try:
            self._append(line, sync)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self.reserve.release():
                self.failures += 1
                raise AuditWriteError(f"audit log {self.path}: {exc.strerror}") from None
            log.error("audit volume %s is full: its reserve was released", self.path.parent)
            try:
                self._append(line, sync)
            except OSError as again:
                self.failures += 1
                raise AuditWriteError(f"audit log {self.path}: {again.strerror}") from None
        self.reserve.restore()
        self._seq, self._prev = record["seq"], record["mac"]
        self._size += len(line)
        if self._mirror is not None:
            self._mirror.write('{"audit":' + line[:-1].decode() + "}\n")
            self._mirror.flush()
        if self.segments.due(self._size) and fields["action"] not in SEGMENT_RECORDS:
            self._close_segment(now)
        return record

    def _close_segment(self, now: datetime | None) -> None:
        """Close the open file and begin the next with a record linking to it; prune the
        oldest segments, saying so (``_lock`` held; a failure leaves the file open)."""
        try:
            closed = self.segments.close(self._seq)
        except OSError as exc:
            log.warning("audit log %s: could not close the segment: %s", self.path, exc)
            return
        self._size = 0
        self._begun = f"follows {closed.name}: records up to {self._seq}, the last one {self._prev}"
        try:
            self._write(_fields(Reason.AUDIT_SEGMENT, detail=self._begun), now, sync=False)
            self._begun = None
            gone = self.segments.prune()
            if gone:
                names = ", ".join(p.name for p in gone)
                detail = f"removed {names}: only the newest {self.segments.kept} are kept"
                self._write(_fields(Reason.AUDIT_PRUNED, detail=detail), now, sync=False)
        except (AuditWriteError, OSError) as exc:  # told with the next record that is written
            log.warning("audit log %s: a new segment: %s", self.path, exc)
        if self.on_segment is not None:
            self.on_segment()

    def _append(self, line: bytes, sync: bool) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            start = os.fstat(fd).st_size
            written = os.write(fd, line)  # one write: never interleaved with another
            if written != len(line):  # a full volume takes part of it: none of it, then
                os.ftruncate(fd, start)
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(line)} bytes")
            if self._fsync and sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def continue_from(self, anchor: Anchor, detail: str) -> dict[str, Any]:
        """Continue the cluster's chain after another replica's anchored head."""
        seq = max(self.head()[0], anchor.seq) + 1
        return self.append(Reason.AUDIT_HANDOFF, detail=detail, seq=seq)


def _fields(
    action: str,
    namespace: str = "",
    name: str = "",
    uid: str = "",
    version: int | None = None,
    kms_key_id: str = "",
    fingerprint: str = "",
    detail: str = "",
) -> dict[str, Any]:
    """A record's own fields, in the order every record has them."""
    return {"action": action, "namespace": namespace, "name": name, "uid": uid,
            "version": version, "kmsKeyId": kms_key_id, "fingerprint": fingerprint,
            "detail": detail}  # fmt: skip
