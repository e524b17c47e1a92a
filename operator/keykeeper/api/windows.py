"""Rotation windows: when a scheduled rotation may happen (pure; the lifecycle asks).

A KeyPolicy's ``rotation.window`` names days of the week and a span of local time in an
IANA time zone (``{days: [Tue, Wed], hours: "02:00-05:00", timeZone: Europe/Berlin}``);
a span whose end is before its start crosses midnight (``22:00-02:00`` is open from
22:00 on each day named until 02:00 the next). A scheduled rotation that falls due
outside the window waits for its next opening; requested rotations, a new source
value, revocations, suspensions and withdrawals never wait for one. Local times follow
the zone's daylight-saving rules; a start that does not exist on a given day (a spring
gap) opens at the same wall time as the zone maps it (``zoneinfo``, fold 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` if there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None


def span(hours: str) -> tuple[time, time]:
    """``"HH:MM-HH:MM"`` as (start, end); they may not be equal (a window never open)."""
    start, dash, end = hours.partition("-")
    if not dash or len(start) != 5 or len(end) != 5:
        raise ValueError(f"the window's hours {hours!r} are not HH:MM-HH:MM")
    opens, closes = time.fromisoformat(start), time.fromisoformat(end)
    if opens == closes:
        raise ValueError(f"the window {hours!r} opens and closes at once: it is never open")
    return opens, closes


def checked_span(hours: str) -> str:
    span(hours)
    return hours


def checked_zone(name: str) -> str:
    zone(name)
    return name


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 Monday .. 6 Sunday: the days the window opens on
    opens: time
    closes: time
    zone: ZoneInfo

    @classmethod
    def of(cls, days: list[str], hours: str, time_zone: str) -> Window:
        opens, closes = span(hours)
        return cls(frozenset(DAYS.index(d) for d in days), opens, closes, zone(time_zone))

    def _openings(self, at: datetime) -> list[tuple[datetime, datetime]]:
        """The window's spans (UTC) that start from the day before ``at`` to a week on."""
        local = at.astimezone(self.zone).date()
        spans = []
        for offset in range(-1, 8):
            day = local + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            start = datetime.combine(day, self.opens, self.zone)
            end_day = day if self.closes > self.opens else day + timedelta(days=1)
            end = datetime.combine(end_day, self.closes, self.zone)
            spans.append((start.astimezone(UTC), end.astimezone(UTC)))
        return spans

    def next_open(self, at: datetime) -> datetime:
        """``at`` if the window is open then, else when it next opens."""
        for start, end in self._openings(at):
            if start <= at < end:
                return at
            if start > at:
                return start
        raise AssertionError("a window with a day opens within a week")  # pragma: no cover

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {self.opens:%H:%M}-{self.closes:%H:%M} {self.zone.key}"
