"""The event loop's stalls are measured: a piece of work that does not yield shows."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from keykeeper.runtime import loopwatch, metrics


def observed_over(bound: float) -> float:
    for sample in metrics.LOOP_STALL.collect()[0].samples:
        if sample.name.endswith("_bucket") and sample.labels["le"] == "+Inf":
            total = sample.value
        if sample.name.endswith("_bucket") and sample.labels["le"] == str(bound):
            within = sample.value
    return total - within


def test_a_stall_is_measured_and_a_long_one_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loopwatch, "WARN_AFTER", 0.2)
    before = observed_over(0.1)

    async def stall() -> None:
        watching = asyncio.create_task(loopwatch.watch_loop(period=0.02))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # work that never yields
        await asyncio.sleep(0.05)
        watching.cancel()

    with caplog.at_level(logging.WARNING, logger="keykeeper.loop"):
        asyncio.run(stall())
    assert observed_over(0.1) - before == 1
    assert "ran nothing else for 0.3 s" in caplog.text
