"""The one timestamp helper: three precisions out, every one of them (and offsets) in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from keykeeper.api import timestamps

MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)


@pytest.mark.parametrize(
    ("write", "text"),
    [
        pytest.param(timestamps.rfc3339, "2026-03-04T05:06:07Z", id="seconds"),
        pytest.param(timestamps.rfc3339_milli, "2026-03-04T05:06:07.891Z", id="milliseconds"),
        pytest.param(timestamps.rfc3339_micro, "2026-03-04T05:06:07.891234Z", id="microseconds"),
    ],
)
def test_each_precision_writes_utc_and_reads_back(write, text) -> None:  # type: ignore[no-untyped-def]
    assert write(MOMENT) == text
    assert write(MOMENT.astimezone(timezone(timedelta(hours=2)))) == text  # any zone: UTC out
    assert abs(timestamps.parse(text) - MOMENT) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        pytest.param("1970-01-01T00:00:10Z", 10.0, id="zulu"),
        pytest.param("1970-01-01T01:00:10+01:00", 10.0, id="offset"),
        pytest.param("1970-01-01T00:00:10", 10.0, id="no-zone-is-utc"),
        pytest.param("yesterday", None, id="not-a-time"),
        pytest.param(12, None, id="not-a-string"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_epoch_reads_what_it_can_and_nothing_else(text: object, epoch: float | None) -> None:
    assert timestamps.epoch(text) == epoch
