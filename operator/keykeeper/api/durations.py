"""Durations as written in KeyPolicies: ``90d``, ``2160h``, ``1h30m``, ``30s``.

Units: ``s``, ``m``, ``h``, ``d`` (24 h) and ``w`` (7 d); whole numbers only, units may
be combined largest first. The CRD schema enforces the same pattern at admission,
digits bounded per unit; the parser also refuses anything longer than 100 years, so a
hostile ``99999999999999999999w`` is a clear error instead of an overflow.
"""

from __future__ import annotations

import re
from datetime import timedelta

PATTERN = r"^([0-9]{1,4}w)?([0-9]{1,5}d)?([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"
LONGEST = timedelta(days=36500)
_RE = re.compile(PATTERN)
_UNITS = ("w", "d", "h", "m", "s")
_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    match = _RE.fullmatch(text.strip()) if len(text) <= 32 else None
    if not text.strip() or match is None:
        raise ValueError(f"{text[:40]!r} is not a duration like 90d, 2160h, 1h30m or 30s")
    seconds = 0
    for unit, part in zip(_UNITS, match.groups(), strict=True):
        if part:
            seconds += int(part[:-1]) * _SECONDS[unit]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    out = []
    for unit in _UNITS:
        count, seconds = divmod(seconds, _SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"
