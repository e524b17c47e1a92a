"""The audit log's segments: the file is closed at a size and a new one begun.

A log only ever grows, and tenants make it grow (K9), so the file being written
(``audit.jsonl``) is closed once it reaches ``segment_bytes``: renamed to
``audit.jsonl.<seq of its last record, 12 digits>`` (the names sort in chain order)
and a new file begun whose first record, ``AuditSegment``, links to the closed one's
last record (``prev``) and names it in ``detail``. So the segments concatenated in
name order, then the open file, are one chain (``keykeeper audit verify
audit.jsonl.0* audit.jsonl``), and each file on its own still verifies from its
first record: a segment's head is anchored in the record that begins the next one
(and the cluster's anchor is written as soon as a segment closes).

Only the newest ``kept`` segments stay on the volume; removing an older one is
itself recorded (``AuditPruned``, naming its records), so a chain that starts after
record 1 says why. Ship the stdout copy for a longer history.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keykeeper.audit.chain import mac_of, parse_record

SEGMENT_BYTES = 16 * 1024 * 1024  # the open file is closed past this size
KEPT = 8  # closed segments kept on the volume (0: all)


@dataclass(frozen=True)
class Segments:
    path: Path  # the open file; closed ones are beside it
    segment_bytes: int = SEGMENT_BYTES
    kept: int = KEPT

    def closed(self) -> list[Path]:
        """Closed segments, oldest first."""
        prefix = self.path.name + "."
        found = [
            p
            for p in self.path.parent.glob(prefix + "*")
            if p.name[len(prefix) :].isdigit() and len(p.name) == len(prefix) + 12
        ]
        return sorted(found)

    def due(self, size: int) -> bool:
        return 0 < self.segment_bytes <= size

    def close(self, last_seq: int) -> Path:
        """Close the open file (durable first: records written without a sync are in it)."""
        closed = self.path.with_name(f"{self.path.name}.{last_seq:012d}")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.path, closed)
        _sync_directory(self.path.parent)
        return closed

    def prune(self) -> list[Path]:
        """Remove the oldest closed segments beyond ``kept``; the ones removed."""
        closed = self.closed()
        gone = closed[: max(len(closed) - self.kept, 0)] if self.kept > 0 else []
        for old in gone:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        if gone:
            _sync_directory(self.path.parent)
        return gone

    def newest_head(self, key: bytes) -> tuple[int, str] | None:
        """The last verifiable record of the newest closed segment: where the chain goes
        on when the open file is missing or holds nothing (a stop between a close and
        the record that begins the next file)."""
        for segment in reversed(self.closed()):
            found = last_verified(segment.read_bytes(), key)
            if found is not None:
                return found[1], found[2]
        return None

    def find(self, seq: int) -> dict[str, Any] | None:
        """The record ``seq``, in the open file or a closed segment."""
        for path in [self.path, *reversed(self.closed())]:
            record = _find_in(path, seq)
            if record is not None:
                return record
        return None


def last_verified(data: bytes, key: bytes) -> tuple[int, int, str] | None:
    """(end offset, seq, mac) of the last record in ``data`` whose MAC verifies."""
    end = len(data)
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        line = data[start:end].strip()
        if line:
            record = parse_record(line)
            if record is not None and hmac.compare_digest(str(record["mac"]), mac_of(key, record)):
                return end, int(record["seq"]), str(record["mac"])
        end = start
    return None


def _find_in(path: Path, seq: int) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        for line in handle:
            record = parse_record(line.strip()) if line.strip() else None
            if record is not None and record.get("seq") == seq:
                return record
    return None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file only its owner may read (0600, as the log itself)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a leftover .tmp of a crash: its mode is not trusted
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
