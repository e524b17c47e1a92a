"""The audit of the image's locked set says what it could check, never more: a run in
which no vulnerability database answered is NOT AUDITED, not a clean result."""

from __future__ import annotations

from typing import Any

import pytest
from devtools.supplychain import judge


def dep(name: str, *vulns: str, skipped: bool = False) -> dict[str, Any]:
    if skipped:
        return {"name": name, "skip_reason": f"Dependency not found on PyPI: {name}"}
    return {"name": name, "version": "1", "vulns": [{"id": v} for v in vulns]}


@pytest.mark.parametrize(
    ("deps", "ok", "says"),
    [
        pytest.param(
            [dep("a", skipped=True), dep("b", skipped=True)], True, "NOT AUDITED", id="no-database"
        ),
        pytest.param([dep("a"), dep("b")], True, "OK: 2 packages audited", id="clean"),
        pytest.param([dep("a"), dep("b", skipped=True)], True, "1 not audited", id="partly"),
        pytest.param(
            [dep("a", "GHSA-1", "PYSEC-2"), dep("b")], False, "a: GHSA-1, PYSEC-2", id="vulnerable"
        ),
    ],
)
def test_the_verdict_says_what_was_checked(deps: list[dict[str, Any]], ok: bool, says: str) -> None:
    verdict = judge({"dependencies": deps, "fixes": []})
    assert verdict.ok is ok
    assert says in str(verdict)
    if says == "NOT AUDITED":
        assert "OK" not in str(verdict) and "No known" not in str(verdict)
