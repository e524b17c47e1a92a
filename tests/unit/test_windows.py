"""Rotation windows (pure): when a scheduled rotation may happen."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keykeeper.api.windows import Window

BERLIN = Window.of(["Tue", "Wed"], "02:00-05:00", "Europe/Berlin")
NIGHT = Window.of(["Fri"], "22:00-02:00", "UTC")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "at", "opens"),
    [
        # 2026-12-01 is a Tuesday; Berlin is UTC+1 in December
        (BERLIN, "2026-12-01T01:30", "2026-12-01T01:30"),  # 02:30 local: open
        (BERLIN, "2026-12-01T00:59", "2026-12-01T01:00"),  # 01:59 local: opens at 02:00
        (BERLIN, "2026-12-01T04:00", "2026-12-02T01:00"),  # 05:00 local: closed, Wednesday
        (BERLIN, "2026-12-02T04:00", "2026-12-08T01:00"),  # after Wednesday's: next Tuesday
        (BERLIN, "2026-12-03T12:00", "2026-12-08T01:00"),
        # summer: UTC+2 (2026-06-02 is a Tuesday)
        (BERLIN, "2026-06-02T00:00", "2026-06-02T00:00"),  # 02:00 local: open
        (BERLIN, "2026-06-01T23:59", "2026-06-02T00:00"),
        # across midnight: Friday 22:00 to Saturday 02:00 (2026-12-04 is a Friday)
        (NIGHT, "2026-12-04T21:00", "2026-12-04T22:00"),
        (NIGHT, "2026-12-05T01:59", "2026-12-05T01:59"),  # Saturday, still Friday's window
        (NIGHT, "2026-12-05T02:00", "2026-12-11T22:00"),
    ],
)
def test_next_open(window: Window, at: str, opens: str) -> None:
    assert window.next_open(utc(at)) == utc(opens)


@pytest.mark.parametrize(
    ("days", "hours", "zone", "problem"),
    [
        (["Mon"], "02:00-02:00", "UTC", "never open"),
        (["Mon"], "02:00-05:00", "Mars/Olympus", "not an IANA time zone"),
        (["Mon"], "02:00-05:00", "../../etc/passwd", "not an IANA time zone"),
        (["Mon"], "25:00-05:00", "UTC", "hour must be in"),
    ],
)
def test_a_window_that_cannot_open_is_refused(
    days: list[str], hours: str, zone: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Window.of(days, hours, zone)


def test_describe() -> None:
    assert BERLIN.describe() == "Tue,Wed 02:00-05:00 Europe/Berlin"
