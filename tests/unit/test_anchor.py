"""The audit anchor across a restart: an unchanged head is not written again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from keykeeper.audit.anchor import Anchorer
from keykeeper.audit.log import AuditLog
from tests.unit.fakekube import FakeKube

KEY = b"a" * 32
NS = "keykeeper-system"


def test_a_restart_with_an_anchored_head_writes_nothing(tmp_path: Path) -> None:
    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    audit.append("Created", name="k")

    async def before_and_after() -> None:
        first = Anchorer(kube, NS, audit, KEY)
        await first.check_at_start()
        await first.anchor()
        assert kube.writes(), "the first anchor is written"
        kube.requests.clear()
        again = Anchorer(kube, NS, AuditLog(audit.path, KEY, fsync=False), KEY)  # a restart
        await again.check_at_start()
        await again.anchor()
        assert kube.writes() == [], "the same head is not anchored twice"
        audit.append("Projected", name="k")
        moved = Anchorer(kube, NS, AuditLog(audit.path, KEY, fsync=False), KEY)
        await moved.check_at_start()
        await moved.anchor()
        assert kube.writes(), "a head that moved is anchored"

    asyncio.run(before_and_after())


def test_a_new_leader_continues_the_chain_after_another_replicas_anchor(tmp_path: Path) -> None:
    """Two replicas, two files: b's log goes on from a's anchored head with a handoff
    record, and b's own file still verifies."""
    from keykeeper.api.reasons import Reason
    from keykeeper.audit.anchor import read
    from keykeeper.audit.chain import verify

    kube = FakeKube()
    a_log = AuditLog(tmp_path / "a.jsonl", KEY, fsync=False)
    b_log = AuditLog(tmp_path / "b.jsonl", KEY, fsync=False)
    b_log.append("Created", name="earlier")  # b led once, long ago

    async def go() -> None:
        a = Anchorer(kube, NS, a_log, KEY, writer="pod-a")
        await a.check_at_start()
        for i in range(5):
            a_log.append("Projected", name=f"k{i}")
        await a.anchor()
        b = Anchorer(kube, NS, b_log, KEY, writer="pod-b")
        await b.check_at_start()  # b becomes the leader
        b_log.append("Projected", name="k-next")
        await b.anchor()

    asyncio.run(go())
    records = [json.loads(line) for line in b_log.path.read_text().splitlines()]
    handoff = records[1]
    assert handoff["action"] == Reason.AUDIT_HANDOFF
    assert handoff["seq"] == 6, "the next number after a's anchored record 5"
    assert handoff["prev"] == records[0]["mac"], "b's own file stays linked"
    assert "record 5" in handoff["detail"] and "pod-a" in handoff["detail"]
    assert records[2]["seq"] == 7
    anchor = asyncio.run(read(kube, NS))
    assert anchor is not None and anchor.writer == "pod-b" and anchor.authentic(KEY)
    assert verify(b_log.path.read_bytes().splitlines(), KEY, anchor).ok
    assert all(r["action"] != "AuditGap" for r in records), "a handoff is no gap"


def test_a_forged_writer_on_the_anchor_breaks_its_seal(tmp_path: Path) -> None:
    from keykeeper.audit.chain import Anchor

    sealed = Anchor.of(KEY, 5, "f" * 64, writer="pod-a")
    assert sealed.authentic(KEY)
    assert not Anchor(5, "f" * 64, sealed.seal, writer="pod-b").authentic(KEY)
    assert not Anchor(5, "f" * 64, sealed.seal).authentic(KEY)


def test_only_a_handoff_may_jump_and_only_forward(tmp_path: Path) -> None:
    from keykeeper.audit.chain import Anchor, verify

    log = AuditLog(tmp_path / "x.jsonl", KEY, fsync=False)
    log.append("Created", name="k")
    log.continue_from(Anchor.of(KEY, 40, "e" * 64, "pod-a"), detail="from pod-a")
    log.append("Projected", name="k")
    lines = log.path.read_bytes().splitlines()
    assert verify(lines, KEY).ok
    assert [json.loads(line)["seq"] for line in lines] == [1, 41, 42]
    jumped = AuditLog(tmp_path / "y.jsonl", KEY, fsync=False)
    jumped.append("Created", name="k")
    jumped.append("Projected", name="k", seq=9)  # a jump that is not a handoff
    verdict = verify(jumped.path.read_bytes().splitlines(), KEY)
    assert not verdict.ok and "jumps from 1 to 9" in verdict.problem


def test_records_are_mirrored_to_stdout_as_json_lines(tmp_path: Path) -> None:
    import io

    from keykeeper.audit.chain import verify

    out = io.StringIO()
    log = AuditLog(tmp_path / "m.jsonl", KEY, fsync=False, mirror=out)
    log.append("Created", name="k", fingerprint="hmac-sha256:ab")
    log.append("Projected", name="k")
    shipped = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [s["audit"]["seq"] for s in shipped] == [1, 2]
    file_lines = log.path.read_text().splitlines()
    assert [json.dumps(s["audit"], sort_keys=True, separators=(",", ":")) for s in shipped] == (
        file_lines
    ), "the shipped line holds the very record the file holds"
    assert verify([json.dumps(s["audit"]) for s in shipped], KEY).ok


def test_a_hostile_detail_cannot_forge_a_shipped_line(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    log = AuditLog(tmp_path / "h.jsonl", KEY, fsync=False, mirror=out)
    log.append("Imported", detail='x"}\n{"audit":{"seq":99,"action":"Erased"}}\n')
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["audit"]["action"] == "Imported"


def _edit_anchor(kube: FakeKube, annotations: dict[str, str] | None = None) -> None:
    """Someone else writes the anchor Secret (its resourceVersion moves)."""
    from keykeeper.audit.anchor import ANCHOR_SECRET
    from keykeeper.kube.paths import secret_path

    path = secret_path(NS, ANCHOR_SECRET)
    body = json.loads(json.dumps(kube.objects[path]))
    body["metadata"]["labels"]["edited"] = "yes"
    body["metadata"]["annotations"].update(annotations or {})
    asyncio.run(kube.replace(path, body))


def test_one_conflicting_write_does_not_stop_anchoring(tmp_path: Path) -> None:
    """Finding K11: a 409 on the anchor left its resourceVersion stale, so every later
    anchor failed and the cluster's head stopped moving (a truncation after it then
    passed verify). The anchor is re-read and written again."""
    from keykeeper.audit.anchor import read

    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    audit.append("Created", name="k")
    anchorer = Anchorer(kube, NS, audit, KEY, writer="a")
    asyncio.run(anchorer.check_at_start())
    asyncio.run(anchorer.anchor())
    _edit_anchor(kube)
    audit.append("Projected", name="k")
    asyncio.run(anchorer.anchor())
    found = asyncio.run(read(kube, NS))  # type: ignore[arg-type]
    assert found is not None and found.seq == audit.head()[0] and not anchorer.superseded


def test_an_authentic_anchor_ahead_by_another_replica_stops_this_one(tmp_path: Path) -> None:
    import pytest

    from keykeeper.audit.chain import Anchor
    from keykeeper.errors import Conflict

    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    audit.append("Created", name="k")
    anchorer = Anchorer(kube, NS, audit, KEY, writer="a")
    asyncio.run(anchorer.check_at_start())
    asyncio.run(anchorer.anchor())
    ahead = Anchor.of(KEY, 50, "f" * 64, writer="b", at="2026-12-02T10:00:00Z")  # new leader's
    _edit_anchor(
        kube,
        {
            "keykeeper.dev/audit-seq": "50",
            "keykeeper.dev/audit-mac": ahead.mac,
            "keykeeper.dev/audit-seal": ahead.seal,
            "keykeeper.dev/audit-writer": "b",
            "keykeeper.dev/audit-anchored-at": ahead.at,
        },
    )
    audit.append("Projected", name="k")
    kube.requests.clear()
    with pytest.raises(Conflict):
        asyncio.run(anchorer.anchor())
    assert anchorer.superseded
    asyncio.run(anchorer.anchor())
    assert [r[0] for r in kube.writes()] == ["PUT"], "one refused write, then nothing"


def test_the_anchor_is_dated_and_its_age_and_lag_are_known(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from keykeeper.audit.anchor import ANCHOR_SECRET, describe, parse
    from keykeeper.kube.paths import secret_path

    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False)
    audit.append("Created", name="k")
    anchorer = Anchorer(kube, NS, audit, KEY, writer="pod-a")
    assert anchorer.age() == 0.0 and anchorer.unanchored() == 1
    asyncio.run(anchorer.anchor())
    assert anchorer.unanchored() == 0 and anchorer.age() < 1.0
    found = parse(kube.objects[secret_path(NS, ANCHOR_SECRET)])
    assert found is not None and found.authentic(KEY) and found.at
    later = datetime.fromisoformat(found.at.replace("Z", "+00:00")).astimezone(UTC)
    line = describe(found, later.replace(microsecond=0) + (later - later.replace(microsecond=0)))
    assert f"record {found.seq}, written by pod-a at {found.at} (0 s ago)" in line
    audit.append("Projected", name="k")
    assert anchorer.unanchored() == 1


def test_a_forged_anchor_date_breaks_its_seal(tmp_path: Path) -> None:
    from keykeeper.audit.chain import Anchor

    real = Anchor.of(KEY, 3, "a" * 64, writer="w", at="2026-12-02T10:00:00Z")
    assert real.authentic(KEY)
    forged = Anchor(real.seq, real.mac, real.seal, real.writer, "2030-01-01T00:00:00Z")
    assert not forged.authentic(KEY)


def test_a_closed_segment_is_anchored_at_once_not_at_the_next_tick(tmp_path: Path) -> None:
    """K9: the head that ends a segment is anchored as soon as the segment closes, so
    a whole newest segment taken away is caught even before the next tick."""
    kube = FakeKube()
    audit = AuditLog(tmp_path / "audit.jsonl", KEY, fsync=False, segment_bytes=2048, kept=0)
    anchorer = Anchorer(kube, NS, audit, KEY, writer="pod-a")
    audit.on_segment = anchorer.soon

    async def closing() -> None:
        ticking = asyncio.create_task(anchorer.run(interval=3600))  # the tick never comes
        await asyncio.sleep(0)
        for n in range(10):
            audit.append("Projected", name="k", detail=f"t{n}" * 100)
        assert audit.segments.closed(), "no segment closed"
        for _ in range(100):
            if anchorer.unanchored() < audit.head()[0]:
                break
            await asyncio.sleep(0.01)
        ticking.cancel()

    asyncio.run(closing())
    assert kube.writes(), "the segment's head was not anchored before the tick"
