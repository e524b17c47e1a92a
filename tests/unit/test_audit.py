"""The audit log's chain catches every kind of tampering, and names the first break."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keykeeper.audit import AuditLog, verify

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
