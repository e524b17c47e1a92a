"""Which stamp an opted-in workload should carry after a rotation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from keykeeper.controllers.apikey.restarts import OPT_IN, RESTARTED_FOR, stamp_for


def workload(names: str, stamped: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": {RESTARTED_FOR: stamped}}}
    if stamped is None:
        template = {"metadata": {}}
    return {"metadata": {"annotations": {OPT_IN: names}}, "spec": {"template": template}}


@pytest.mark.parametrize(
    ("names", "stamped", "rotated", "expected"),
    [
        ("a-key", None, {"a-key": 2}, "a-key=2"),
        ("a-key, b-key", None, {"a-key": 2, "b-key": 2}, "a-key=2,b-key=2"),
        ("a-key", "a-key=2", {"a-key": 2}, None),  # already rolled for this version
        ("a-key", "a-key=2", {"a-key": 3}, "a-key=3"),
        ("b-key", None, {"a-key": 2}, None),  # names another Secret
        ("", None, {"a-key": 2}, None),
        ("a-key,b-key", None, {"a-key": 4}, "a-key=4"),  # only what rotated
    ],
)
def test_stamp_for(
    names: str, stamped: str | None, rotated: dict[str, int], expected: str | None
) -> None:
    assert stamp_for(workload(names, stamped), rotated) == expected
