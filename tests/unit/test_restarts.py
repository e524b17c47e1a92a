"""Which stamp an opted-in workload should carry after a rotation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from keykeeper.controllers.apikey.restarts import OPT_IN, RESTARTED_FOR
from keykeeper.controllers.apikey.stamps import stamp_for


def workload(names: str, stamped: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": {RESTARTED_FOR: stamped}}}
    if stamped is None:
        template = {"metadata": {}}
    return {"metadata": {"annotations": {OPT_IN: names}}, "spec": {"template": template}}


SOURCE = ("home", "k")


@pytest.mark.parametrize(
    ("names", "stamped", "rotated", "expected"),
    [
        ("home/k:a-key", None, {"a-key": 2}, "a-key=2"),
        ("home/k:a-key, home/k:b-key", None, {"a-key": 2, "b-key": 2}, "a-key=2,b-key=2"),
        ("home/k:a-key", "a-key=2", {"a-key": 2}, None),  # already rolled for this version
        ("home/k:a-key", "a-key=2", {"a-key": 3}, "a-key=3"),
        ("home/k:b-key", None, {"a-key": 2}, None),  # names another Secret
        ("", None, {"a-key": 2}, None),
        ("home/k:a-key,home/k:b-key", None, {"a-key": 4}, "a-key=4"),  # only what rotated
        # K13: the Secret's name alone, or another key's, restarts nothing
        ("a-key", None, {"a-key": 2}, None),
        ("other/k:a-key", None, {"a-key": 2}, None),
        ("home/k2:a-key", None, {"a-key": 2}, None),
        ("home/k:", None, {"a-key": 2}, None),
        ("home/k:a-key,other/x:b-key", None, {"a-key": 2, "b-key": 2}, "a-key=2"),
    ],
)
def test_stamp_for(
    names: str, stamped: str | None, rotated: dict[str, int], expected: str | None
) -> None:
    assert stamp_for(workload(names, stamped), rotated, SOURCE) == expected
