"""One journal per reconcile: audit records at once, Events held for the reporter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from keykeeper.audit.chain import verify
from keykeeper.audit.journal import Journal, Told, summarize
from keykeeper.audit.log import AuditLog
from keykeeper.core import store
from keykeeper.core.narration import Entry

KEY = b"k" * 32
VERSION = store.Version(3, "2026-01-01T00:00:00.000000Z", "hmac-sha256:ab", "master/k1", "local")


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_intend_writes_the_record_now_and_tells_nothing(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", KEY, fsync=False)
    journal = Journal(audit, ("team-a", "stripe"), "uid-1")
    asyncio.run(journal.intend("Rotated", "Scheduled: 2 -> 3", VERSION))
    asyncio.run(journal.intend("Projected", "team-b/stripe"))
    written = records(audit.path)
    assert [r["action"] for r in written] == ["Rotated", "Projected"]
    assert written[0]["version"] == 3 and written[0]["kmsKeyId"] == "master/k1"
    assert written[1]["version"] is None and written[1]["fingerprint"] == ""
    assert {r["namespace"] for r in written} == {"team-a"}
    assert journal.told == []
    assert verify(audit.path.read_text().splitlines(), KEY).ok


def test_tell_holds_events_in_order_for_the_reporter(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", KEY, fsync=False)
    journal = Journal(audit, ("team-a", "stripe"), "uid-1")
    journal.tell("Normal", "Created", "stored version 1")
    journal.tell("Normal", "Projected", "projected version 1 into team-b/stripe")
    assert journal.told == [
        Told("Normal", "Created", "stored version 1"),
        Told("Normal", "Projected", "projected version 1 into team-b/stripe"),
    ]
    assert not audit.path.exists() or audit.path.read_text() == ""


def test_narrate_is_both_and_an_entry_without_audit_is_an_event_only(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "a.jsonl", KEY, fsync=False)
    journal = Journal(audit, ("team-a", "stripe"), "uid-1")
    asyncio.run(
        journal.narrate(
            Entry("Warning", "ProjectionDenied", "team-x/s: NotAllowed: no", "team-x/s")
        )
    )
    asyncio.run(journal.narrate(Entry("Normal", "Reinstated", "reinstated: projections restored")))
    assert [r["action"] for r in records(audit.path)] == ["ProjectionDenied"]
    assert [t.reason for t in journal.told] == ["ProjectionDenied", "Reinstated"]


def test_a_journal_without_a_log_only_tells() -> None:
    journal = Journal(None, ("team-a", "gone"), "")
    asyncio.run(journal.intend("Withdrawn", "team-b/stripe"))
    journal.tell("Normal", "ProjectionWithdrawn", "withdrew team-b/stripe")
    assert len(journal.told) == 1


def test_a_reconcile_is_one_event_per_type_naming_every_action() -> None:
    told = [
        Told("Normal", "Created", "stored version 1"),
        Told("Normal", "Encrypted", "version 1 encrypted under local key k"),
        Told("Warning", "ProjectionDenied", "team-x/s: NotAllowed"),
        Told("Normal", "Projected", "projected version 1 into a/s"),
        Told("Normal", "Projected", "projected version 1 into b/s"),
        Told("Warning", "ProviderUnavailable", "kms down"),
    ]
    assert summarize(told) == [
        Told(
            "Normal",
            "Created",
            "Created: stored version 1 | Encrypted: version 1 encrypted under local key k"
            " | Projected: projected version 1 into a/s; projected version 1 into b/s",
        ),
        Told(
            "Warning",
            "ProjectionDenied",
            "ProjectionDenied: team-x/s: NotAllowed | ProviderUnavailable: kms down",
        ),
    ]
    assert summarize([]) == []
