"""How long the event loop goes without yielding (K4: a namespace event once kept it
busy for 11.5 s, past the Lease's 10 s renew deadline). A timer due every ``PERIOD``
measures how late it runs: ``keykeeper_event_loop_stall_seconds``, and a warning for a
stall near the deadline."""

from __future__ import annotations

import asyncio
import logging

from keykeeper.runtime import metrics

log = logging.getLogger("keykeeper.loop")

PERIOD = 0.1
WARN_AFTER = 2.0  # seconds: a fifth of the renew deadline


async def watch_loop(period: float = PERIOD) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        stall = max(loop.time() - due, 0.0)
        metrics.LOOP_STALL.observe(stall)
        if stall >= WARN_AFTER:
            log.warning("the event loop ran nothing else for %.1f s", stall)
