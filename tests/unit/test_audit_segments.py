"""K9: the audit log is closed into segments at a size, each begun with a record that
links to the one before, and only the newest are kept (saying so). The segments in
order are one chain; each verifies alone; one taken away breaks the chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keykeeper.audit.chain import verify
from keykeeper.audit.log import AuditLog
from keykeeper.audit.segments import Segments

KEY = b"k" * 32
SEGMENT = 4096  # ~10 records of ~400 bytes


def fill(audit: AuditLog, count: int) -> None:
    for n in range(count):
        audit.append(
            "Projected", namespace="ns", name="k", uid="u", version=1, detail=f"t{n:03d}" * 40
        )


def records(*paths: Path) -> list[dict[str, object]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def text(*paths: Path) -> list[str]:
    return [line for path in paths for line in path.read_text().splitlines()]


def test_the_segments_in_order_are_one_chain_and_each_verifies_alone(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=SEGMENT, kept=0)
    fill(audit, 60)
    closed = audit.segments.closed()
    assert len(closed) >= 4, closed
    assert all(p.stat().st_size < SEGMENT + 2048 for p in closed)
    whole = verify(text(*closed, audit.path), KEY)
    assert whole.ok, whole
    assert whole.records == audit.head()[0]  # every record, from the first
    for path in [*closed, audit.path]:
        assert verify(text(path), KEY).ok, path
    for path in [*closed[1:], audit.path]:  # each file after the first begins linked
        first = records(path)[0]
        assert first["action"] == "AuditSegment" and "follows audit.jsonl.0" in first["detail"]
    seq = int(records(closed[0])[3]["seq"])  # type: ignore[call-overload]
    assert audit.segments.find(seq) == records(closed[0])[3]


def test_a_segment_taken_away_breaks_the_chain(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=SEGMENT, kept=0)
    fill(audit, 60)
    closed = audit.segments.closed()
    verdict = verify(text(*closed[:1], *closed[2:], audit.path), KEY)
    assert not verdict.ok and "does not follow" in verdict.problem, verdict


def test_only_the_newest_segments_are_kept_and_the_removal_is_recorded(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=SEGMENT, kept=2)
    fill(audit, 80)
    closed = audit.segments.closed()
    assert len(closed) == 2
    pruned = [r for r in records(*closed, audit.path) if r["action"] == "AuditPruned"]
    assert pruned and "only the newest 2 are kept" in str(pruned[-1]["detail"])
    assert verify(text(*closed, audit.path), KEY).ok  # what is kept still verifies


def test_a_stop_between_closing_a_segment_and_beginning_the_next(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=0)
    fill(audit, 5)
    closed = Segments(audit.path).close(audit.head()[0])  # renamed; no new file yet
    again = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=0)
    assert again.head() == audit.head()  # the chain goes on from the closed segment
    fill(again, 1)
    assert records(again.path)[0]["action"] == "AuditSegment"
    assert verify(text(closed, again.path), KEY).records == 7
    assert verify(text(again.path), KEY).ok


def test_a_forged_segment_start_does_not_verify(tmp_path: Path) -> None:
    """The first record may link to a segment not given, but only with the key's MAC."""
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=SEGMENT, kept=0)
    fill(audit, 30)
    first = records(audit.path)[0]
    forged = json.dumps({**first, "seq": 1, "detail": "follows nothing"})
    verdict = verify([forged, *text(audit.path)[1:]], KEY)
    assert not verdict.ok and "altered" in verdict.problem


def test_the_cli_verifies_the_segments_then_the_open_file(tmp_path: Path) -> None:
    import base64

    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=SEGMENT, kept=0)
    fill(audit, 40)
    key_file = tmp_path / "audit.key"
    key_file.write_text(base64.b64encode(KEY).decode())
    command = [sys.executable, "-m", "keykeeper.cli", "audit", "verify", "--no-anchor"]
    command += ["--audit-key-file", str(key_file)]
    files = [str(p) for p in [*audit.segments.closed(), audit.path]]
    done = subprocess.run([*command, *files], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and f"OK: {audit.head()[0]} records" in done.stdout, done
    files.pop(1)
    done = subprocess.run([*command, *files], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "does not follow" in done.stdout, done


@pytest.mark.parametrize("size", [0, 1])
def test_a_log_that_is_never_closed_stays_one_file(tmp_path: Path, size: int) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, segment_bytes=size * 10**9)
    fill(audit, 30)
    assert audit.segments.closed() == []
    assert verify(text(audit.path), KEY).records == 30
