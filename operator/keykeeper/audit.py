"""The tamper-evident audit log: HMAC-chained JSON lines.

Events expire (an hour by default), so every action also appends one line::

    {"seq": 7, "ts": "...", "action": "Projected", "namespace": "payments",
     "name": "stripe", "uid": "...", "version": 3, "kmsKeyId": "...",
     "fingerprint": "hmac-sha256:...", "detail": "payments-api/stripe-api-key",
     "prev": "<mac of record 6>", "mac": "<hex HMAC-SHA256>"}

``mac = HMAC(audit key, canonical JSON of the record without "mac")``, canonical
meaning sorted keys, no spaces, UTF-8. Each record names the MAC of the one before
(``prev``; 64 zeros for the first), so removing, reordering, inserting or editing a
record breaks the chain at that point, and only the holder of the audit key (a
subkey of the master key) can write a valid record. Records carry fingerprints,
never values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
FIELDS = (
    "seq",
    "ts",
    "action",
    "namespace",
    "name",
    "uid",
    "version",
    "kmsKeyId",
    "fingerprint",
    "detail",
    "prev",
)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mac_of(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


class AuditLog:
    """Appends chained records to a file; safe to call from several threads."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = key
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev = self._tail()

    def _tail(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        last = None
        with self.path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    last = line
        if last is None:
            return 0, GENESIS
        record = json.loads(last)
        return int(record["seq"]), str(record["mac"])

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
    ) -> dict[str, Any]:
        with self._lock:
            record: dict[str, Any] = {
                "seq": self._seq + 1,
                "ts": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
                "action": action,
                "namespace": namespace,
                "name": name,
                "uid": uid,
                "version": version,
                "kmsKeyId": kms_key_id,
                "fingerprint": fingerprint,
                "detail": detail,
                "prev": self._prev,
            }
            record["mac"] = mac_of(self._key, record)
            line = _canonical(record) + b"\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)  # one write: a record is never interleaved with another
            finally:
                os.close(fd)
            self._seq, self._prev = record["seq"], record["mac"]
            return record


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    line: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.records} records, chain intact"
        return (
            f"BROKEN at line {self.line}: {self.problem} "
            f"({self.records} records verified before it)"
        )


def verify(lines: Iterable[bytes | str], key: bytes) -> Verdict:
    """Check every record's MAC, its link to the one before, and the sequence numbers."""
    prev, seq, count = GENESIS, 0, 0
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or "mac" not in record:
                raise ValueError("not an audit record")
        except ValueError:
            return Verdict(False, count, number, "the line is not an audit record")
        if not hmac.compare_digest(str(record["mac"]), mac_of(key, record)):
            return Verdict(
                False,
                count,
                number,
                f"record seq={record.get('seq')} was altered "
                "(its MAC does not match; or the audit key is not this log's)",
            )
        if record.get("prev") != prev:
            return Verdict(
                False,
                count,
                number,
                f"record seq={record.get('seq')} does not follow "
                "the record before it (a record is missing, reordered or inserted)",
            )
        if record.get("seq") != seq + 1:
            return Verdict(
                False, count, number, f"sequence jumps from {seq} to {record.get('seq')}"
            )
        prev, seq, count = str(record["mac"]), int(record["seq"]), count + 1
    return Verdict(True, count)
