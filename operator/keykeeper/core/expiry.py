"""A value's expiry (pure): the ``Expiring`` and ``Expired`` conditions, and when to
look again.

A value keykeeper did not make (sealed, imported) can carry its expiry
(``spec.expiresAt``, or the source Secret's ``keykeeper.dev/expires-at``). From
``alerts.expiringWithin`` (default 14 days) before it the key shows ``Expiring=True
ExpiresSoon``; from the moment itself ``Expired=True``, which withdraws nothing by
itself (the policy's ``alerts.onExpiry: Suspend`` makes it withdraw, as a suspended
key does). An annotation that is not a time makes ``Expiring=Unknown InvalidValue``.
The reporter's narration tells each crossing once, as a Warning Event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from keykeeper.api import timestamps
from keykeeper.api.conditions import EXPIRED, EXPIRING, Condition
from keykeeper.api.labels import EXPIRES_AT
from keykeeper.api.reasons import Reason
from keykeeper.api.timestamps import rfc3339


@dataclass(frozen=True)
class Expiry:
    conditions: tuple[Condition, ...] = ()
    recheck_after: timedelta | None = None
    expired: bool = False
    at: str | None = None  # the expiry, RFC 3339 (status.valueExpiresAt)


@dataclass(frozen=True)
class Unreadable:
    """An expiry stated in a form that is not a time (a source Secret's annotation)."""

    text: str


def stated(value: datetime | str) -> datetime | Unreadable:
    """An expiry from the spec (a time already) or a source Secret's annotation."""
    if isinstance(value, datetime):
        return value
    try:
        return timestamps.parse(value)
    except ValueError:
        return Unreadable(value)


def assess(expires_at: datetime | Unreadable | None, within: timedelta, now: datetime) -> Expiry:
    if expires_at is None:
        return Expiry()
    if isinstance(expires_at, Unreadable):
        why = f"the source Secret's {EXPIRES_AT} is not an RFC 3339 time; its expiry is unknown"
        return Expiry((Condition(EXPIRING, "Unknown", Reason.INVALID_VALUE, why),))
    at = rfc3339(expires_at)
    if now >= expires_at:
        return Expiry(
            (
                Condition(EXPIRING, "True", Reason.EXPIRED, f"the value expired at {at}"),
                Condition(EXPIRED, "True", Reason.EXPIRED, f"the value expired at {at}"),
            ),
            expired=True,
            at=at,
        )
    not_expired = Condition(EXPIRED, "False", Reason.NOT_EXPIRED, f"the value expires at {at}")
    if now >= expires_at - within:
        left = expires_at - now
        soon = f"the value expires at {at}, in {_days(left)}: supply a new one"
        expiring = Condition(EXPIRING, "True", Reason.EXPIRES_SOON, soon)
        return Expiry((expiring, not_expired), left, at=at)
    quiet = Condition(EXPIRING, "False", Reason.NOT_EXPIRING, f"the value expires at {at}")
    return Expiry((quiet, not_expired), expires_at - within - now, at=at)


def _days(left: timedelta) -> str:
    if left >= timedelta(days=2):
        return f"{left.days} days"
    hours = int(left.total_seconds() // 3600)
    return f"{hours} hours" if hours >= 2 else f"{int(left.total_seconds() // 60)} minutes"


def before_expiry(
    due: datetime | None, made: datetime, expiry: datetime | None, grace: timedelta
) -> datetime | None:
    """A key whose issuer says when it expires rotates a grace period before that (so the
    old one is still good while it is ``.previous``), or at half its life if that is later,
    so a key that lives shorter than the grace period does not rotate without pause; and
    never later than its period. The window does not hold it: an expiring key must rotate."""
    if expiry is None:
        return due
    early = max(expiry - grace, made + (expiry - made) / 2)
    return min(due, early) if due is not None else early
