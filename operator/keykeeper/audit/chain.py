"""The audit log's chain: record MACs, the anchor of its head, and verification.

``mac = HMAC(audit key, canonical JSON of the record without "mac")``, canonical
meaning sorted keys, no spaces, UTF-8; each record's ``prev`` is the MAC of the one
before (64 zeros for the first). ``verify`` checks a log against the key (and, given
one, against the anchored head); it needs the audit key only, never the master key.
The writer is ``audit.log``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keykeeper.api.reasons import Reason

GENESIS = "0" * 64


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mac_of(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """The log's head as last recorded outside the file (in the cluster).

    ``mac`` is the head record's MAC; ``seal`` is an HMAC over the anchor itself, so
    someone who may write the anchor's Secret but lacks the audit key cannot forge one.
    """

    seq: int
    mac: str
    seal: str = ""
    writer: str = ""  # the replica whose file holds record ``seq`` ("" before HA)
    at: str = ""  # when it was written (RFC 3339; "" before 0.5)

    @classmethod
    def of(cls, key: bytes, seq: int, mac: str, writer: str = "", at: str = "") -> Anchor:
        return cls(seq, mac, _anchor_seal(key, seq, mac, writer, at), writer, at)

    def authentic(self, key: bytes) -> bool:
        expected = _anchor_seal(key, self.seq, self.mac, self.writer, self.at)
        return hmac.compare_digest(self.seal, expected)


def _anchor_seal(key: bytes, seq: int, mac: str, writer: str = "", at: str = "") -> str:
    anchored: dict[str, Any] = {"seq": seq, "mac": mac}
    if writer:
        anchored["writer"] = writer
    if at:
        anchored["at"] = at
    body = canonical({"anchor": anchored})
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "mac" not in record or "seq" not in record:
        return None
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
        where = f" at line {self.line}" if self.line is not None else ""
        return f"BROKEN{where}: {self.problem} ({self.records} records verified before it)"


def verify(lines: Iterable[bytes | str], key: bytes, anchor: Anchor | None = None) -> Verdict:
    """Check every record's MAC, its link to the one before, and the sequence numbers
    (the first may be an ``AuditSegment``: the chain goes on from a segment not given);
    with ``anchor``, also that the log still reaches the anchored head (so dropped
    newest records, a rollback or an emptied file are caught)."""
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
        begins = count == 0 and record.get("action") == Reason.AUDIT_SEGMENT
        if begins and isinstance(record.get("seq"), int):  # a segment after others not given
            prev, seq = str(record.get("prev")), int(record["seq"]) - 1
        problem = _problem(record, key, prev, seq)
        if problem:
            return Verdict(False, count, number, problem)
        prev, seq, count = str(record["mac"]), int(record["seq"]), count + 1
        if anchor is not None and seq == anchor.seq and prev != anchor.mac:
            return Verdict(
                False,
                count,
                number,
                f"record seq={seq} is not the anchored one (the log was rolled back or replaced)",
            )
    if anchor is not None:
        if not anchor.authentic(key):
            return Verdict(
                False, count, None, "the anchor is not authentic (forged or another key)"
            )
        if seq < anchor.seq:
            return Verdict(
                False,
                count,
                None,
                f"the log ends at seq={seq} but seq={anchor.seq} was anchored: "
                f"{anchor.seq - seq} newest records are missing (truncated or emptied)",
            )
    return Verdict(True, count)


def _problem(record: dict[str, Any], key: bytes, prev: str, seq: int) -> str:
    """What is wrong with one record after the one with ``prev`` and ``seq`` ("": none)."""
    if not hmac.compare_digest(str(record["mac"]), mac_of(key, record)):
        return (
            f"record seq={record.get('seq')} was altered "
            "(its MAC does not match; or the audit key is not this log's)"
        )
    if record.get("prev") != prev:
        return (
            f"record seq={record.get('seq')} does not follow "
            "the record before it (a record is missing, reordered or inserted)"
        )
    handoff = record.get("action") == Reason.AUDIT_HANDOFF and isinstance(record.get("seq"), int)
    if record.get("seq") != seq + 1 and not (handoff and record["seq"] > seq):
        return f"sequence jumps from {seq} to {record.get('seq')}"
    return ""
