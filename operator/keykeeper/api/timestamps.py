"""Timestamps as the API writes them: RFC 3339 in UTC, in the three precisions used.

* ``rfc3339``: seconds (``metav1.Time``: conditions, Events, status, annotations);
* ``rfc3339_milli``: milliseconds (store versions made within one second stay ordered);
* ``rfc3339_micro``: microseconds (``metav1.MicroTime``: Leases; the sealing keys' dates).

``parse`` reads all of them (and a ``+00:00`` offset); a time without a zone is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_milli(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rfc3339_micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    """``ValueError`` if ``text`` is not a timestamp."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def epoch(text: object) -> float | None:
    """Epoch seconds of a timestamp, or None for anything that is not one."""
    if not isinstance(text, str):
        return None
    try:
        return parse(text).timestamp()
    except ValueError:
        return None
