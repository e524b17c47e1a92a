"""The audit log's chain catches every kind of tampering, and names the first break."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keykeeper.audit.chain import verify
from keykeeper.audit.log import AuditLog
from keykeeper.errors import AuditWriteError

KEY = b"k" * 32


@pytest.fixture
def log(tmp_path: Path) -> Path:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY)
    for n in range(5):
        audit.append(
            "Projected",
            namespace="ns",
            name="k",
            uid="u",
            version=1,
            fingerprint=f"hmac-sha256:{n:032x}",
            detail=f"t{n}",
        )
    return audit.path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_intact_log_verifies(log: Path) -> None:
    verdict = verify(lines(log), KEY)
    assert verdict.ok
    assert verdict.records == 5


def test_the_chain_continues_across_restarts(log: Path) -> None:
    AuditLog(log, KEY).append("Erased", namespace="ns", name="k", uid="u")
    assert verify(lines(log), KEY).records == 6


def edit(record: str) -> str:
    data = json.loads(record)
    data["detail"] = "forged"
    return json.dumps(data)


@pytest.mark.parametrize(
    ("tamper", "line", "problem"),
    [
        pytest.param(lambda ls: ls[:2] + [edit(ls[2])] + ls[3:], 3, "altered", id="edited"),
        pytest.param(lambda ls: ls[:2] + ls[3:], 3, "does not follow", id="removed"),
        pytest.param(
            lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 2, "does not follow", id="reordered"
        ),
        pytest.param(lambda ls: ls[:2] + [ls[1]] + ls[2:], 3, "does not follow", id="duplicated"),
        pytest.param(
            lambda ls: ls[:1] + ["not json"] + ls[1:], 2, "not an audit record", id="garbage"
        ),
        pytest.param(lambda ls: ls[1:], 1, "does not follow", id="head-cut"),
    ],
)
def test_tampering_is_reported_at_the_first_broken_record(
    log: Path,
    tamper,
    line: int,  # type: ignore[no-untyped-def]
    problem: str,
) -> None:
    verdict = verify(tamper(lines(log)), KEY)
    assert not verdict.ok
    assert verdict.line == line
    assert problem in verdict.problem


def test_another_key_cannot_verify(log: Path) -> None:
    assert not verify(lines(log), b"x" * 32).ok


# -- loss is detected: the anchor, the tail, the write ------------------------------------------

from keykeeper.api.reasons import Reason  # noqa: E402
from keykeeper.audit.chain import Anchor  # noqa: E402


def head_anchor(path: Path) -> Anchor:
    last = json.loads(lines(path)[-1])
    return Anchor.of(KEY, last["seq"], last["mac"])


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        pytest.param(lambda ls: ls[:-2], "2 newest records are missing", id="newest-dropped"),
        pytest.param(lambda ls: [], "5 newest records are missing", id="emptied"),
        pytest.param(lambda ls: ls[:-1], "1 newest records are missing", id="last-dropped"),
    ],
)
def test_the_anchor_catches_what_the_chain_cannot(log: Path, tamper, problem: str) -> None:  # type: ignore[no-untyped-def]
    anchor = head_anchor(log)
    shortened = tamper(lines(log))
    assert verify(shortened, KEY).ok  # the chain alone is fooled
    verdict = verify(shortened, KEY, anchor)
    assert not verdict.ok
    assert problem in verdict.problem


def test_a_rolled_back_log_is_caught(tmp_path: Path, log: Path) -> None:
    anchor = head_anchor(log)
    other = AuditLog(tmp_path / "other.jsonl", KEY)
    for n in range(6):
        other.append("Projected", detail=f"other {n}")
    verdict = verify(lines(other.path), KEY, anchor)
    assert not verdict.ok
    assert "not the anchored one" in verdict.problem


def test_a_forged_anchor_is_refused(log: Path) -> None:
    forged = Anchor(3, json.loads(lines(log)[2])["mac"], "0" * 64)
    assert "not authentic" in verify(lines(log), KEY, forged).problem


def test_a_torn_tail_is_quarantined_and_the_chain_goes_on(log: Path) -> None:
    with log.open("ab") as handle:
        handle.write(b'{"seq": 6, "ts": "2026-')  # a crash mid-write
    audit = AuditLog(log, KEY)
    audit.append("Projected", detail="after the crash")
    records = [json.loads(line) for line in lines(log)]
    assert [r["action"] for r in records[-2:]] == [Reason.AUDIT_GAP, "Projected"]
    assert verify(lines(log), KEY).ok
    quarantined = list(log.parent.glob("audit.jsonl.quarantined-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes().startswith(b'{"seq": 6')


def test_a_recovered_log_and_its_quarantine_are_private(log: Path) -> None:
    """K19: the recovered log and the quarantined tail are rewritten files; they keep
    the log's own mode (0600), whatever the umask."""
    import os

    with log.open("ab") as handle:
        handle.write(b'{"seq": 6, "ts": "2026-')
    before = os.umask(0o022)
    try:
        AuditLog(log, KEY)
    finally:
        os.umask(before)
    for path in [log, *log.parent.glob("audit.jsonl.quarantined-*")]:
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_an_altered_tail_is_not_trusted(log: Path) -> None:
    altered = lines(log)
    altered[-1] = edit(altered[-1])
    log.write_text("\n".join(altered) + "\n")
    AuditLog(log, KEY).append("Projected")
    records = [json.loads(line) for line in lines(log)]
    # the chain continues from the last record that verifies, with the gap said
    assert [(r["seq"], r["action"]) for r in records[-2:]] == [
        (5, Reason.AUDIT_GAP),
        (6, "Projected"),
    ]
    assert verify(lines(log), KEY).ok


def test_a_record_that_cannot_be_written_raises(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", KEY)
    audit.path = tmp_path / "gone" / "audit.jsonl"  # the volume went away
    with pytest.raises(AuditWriteError):
        audit.append("Projected")
    assert audit.head() == (0, "0" * 64)  # nothing counted as written


def test_audit_verify_works_in_passphrase_mode(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from keykeeper.cli.commands import main
    from keykeeper.crypto.kdf import PassphraseKdf, Purpose, derive_master_key

    passphrase = "correct horse battery staple 4 Argon2id!"
    kdf = PassphraseKdf.new()
    key = derive_master_key(passphrase, kdf).subkey(Purpose.AUDIT_MAC)
    audit = AuditLog(tmp_path / "audit.jsonl", key)
    for n in range(3):
        audit.append("Projected", detail=str(n))
    (tmp_path / "pass").write_text(passphrase)
    (tmp_path / "anchor.json").write_text(
        json.dumps(
            {
                "metadata": {
                    "annotations": {
                        "keykeeper.dev/audit-seq": "3",
                        "keykeeper.dev/audit-mac": audit.head()[1],
                        "keykeeper.dev/audit-seal": Anchor.of(key, *audit.head()).seal,
                    }
                }
            }
        )
    )
    argv = ["audit", "verify", str(audit.path), "--passphrase-file", str(tmp_path / "pass")]
    argv += ["--kdf", kdf.encode(), "--anchor-file", str(tmp_path / "anchor.json")]
    assert main(argv) == 0
    assert "OK: 3 records" in capsys.readouterr().out
    audit.path.write_text("")  # emptied
    assert main(argv) == 1
    assert "3 newest records are missing" in capsys.readouterr().out


def test_an_auditor_verifies_with_the_audit_key_alone(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """K19: ``audit key`` hands out the audit key; ``verify --audit-key-file`` needs no
    master key (which would open every value)."""
    import base64

    from keykeeper.cli.commands import main
    from keykeeper.crypto.kdf import MasterKey, Purpose

    master = MasterKey.generate()
    (tmp_path / "master").write_text(base64.b64encode(master.export()).decode())
    assert main(["audit", "key", "--master-key-file", str(tmp_path / "master")]) == 0
    exported = capsys.readouterr().out.strip()
    assert base64.b64decode(exported) == master.subkey(Purpose.AUDIT_MAC)
    assert base64.b64encode(master.export()).decode() not in exported
    audit = AuditLog(tmp_path / "audit.jsonl", master.subkey(Purpose.AUDIT_MAC))
    for n in range(3):
        audit.append("Projected", detail=str(n))
    (tmp_path / "audit.key").write_text(exported)
    argv = ["audit", "verify", str(audit.path), "--audit-key-file", str(tmp_path / "audit.key")]
    assert main([*argv, "--no-anchor"]) == 0
    assert "OK: 3 records" in capsys.readouterr().out
    (tmp_path / "audit.key").write_text(base64.b64encode(b"short").decode())
    assert main([*argv, "--no-anchor"]) == 1
    assert "no 32-byte key" in capsys.readouterr().err


def test_withdrawals_taken_while_the_disk_is_full_are_named_once_it_is_not(log: Path) -> None:
    """K9: a full audit volume stopped every withdrawal. A withdrawal goes ahead; the log
    names it in an AuditGap record, in the chain, before the next record it takes."""
    audit = AuditLog(log, KEY)
    audit.path = Path("/dev/full")  # every write: ENOSPC
    with pytest.raises(AuditWriteError):
        audit.append("Projected", namespace="ns", name="k", detail="a/k")
    for target in ("a/k", "b/k"):
        audit.remember("ProjectionWithdrawn", namespace="ns", name="k", uid="u", detail=target)
    audit.path = log  # the disk answers again
    audit.append("Revoked", namespace="ns", name="k", uid="u", detail="projections withdrawn")
    records = [json.loads(line) for line in lines(log)]
    gap, revoked = records[-2:]
    assert (gap["action"], revoked["action"]) == ("AuditGap", "Revoked")
    assert "ProjectionWithdrawn ns/k (uid u) a/k" in gap["detail"]
    assert "b/k" in gap["detail"]
    assert verify(lines(log), KEY).ok
    audit.append("Projected", namespace="ns", name="k", detail="c/k")
    assert json.loads(lines(log)[-1])["action"] == "Projected", "the gap is told once"
