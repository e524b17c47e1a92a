"""The lifecycle: every edge as a table row, and random histories as a property."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keykeeper.api.models import Phase, RotationStrategy
from keykeeper.api.windows import Window
from keykeeper.core.lifecycle import (
    ALLOWED,
    CreateVersion,
    Decision,
    Erase,
    Intent,
    Observed,
    RecordRevocation,
    RetirePrevious,
    Rules,
    VersionFacts,
    decide,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
RULES = Rules(period=timedelta(days=90), grace=timedelta(hours=24), revoked_for=timedelta(days=30))
MANUAL = replace(RULES, strategy=RotationStrategy.MANUAL)


def v(
    n: int,
    age: timedelta = timedelta(0),
    source: str | None = None,
    expires_in: timedelta | None = None,
) -> VersionFacts:
    return VersionFacts(n, T0 - age, source, T0 + expires_in if expires_in is not None else None)


def phase_and_actions(d: Decision) -> tuple[Phase, tuple[object, ...]]:
    return d.phase, d.actions


EDGES = [
    pytest.param(
        Intent(),
        RULES,
        Observed(),
        (Phase.GENERATED, (CreateVersion("Initial"),)),
        id="generated-creates-first-version",
    ),
    pytest.param(
        Intent(), RULES, Observed(current=v(1)), (Phase.ACTIVE, ()), id="generated-to-active"
    ),
    pytest.param(
        Intent(),
        RULES,
        Observed(current=v(1, 91 * DAY)),
        (Phase.ROTATION_PENDING, (CreateVersion("Scheduled"),)),
        id="period-elapsed-generate",
    ),
    pytest.param(
        Intent(user_supplied=True),
        MANUAL,
        Observed(current=v(1, 91 * DAY, "s1"), source_fingerprint="s1"),
        (Phase.ROTATION_PENDING, ()),
        id="period-elapsed-manual-waits",
    ),
    pytest.param(
        Intent(user_supplied=True),
        MANUAL,
        Observed(current=v(1, 91 * DAY, "s1"), source_fingerprint="s2"),
        (Phase.ROTATION_PENDING, (CreateVersion("SourceChanged"),)),
        id="manual-new-source-value",
    ),
    pytest.param(
        Intent(user_supplied=True),
        RULES,
        Observed(current=v(1, DAY, "s1"), source_fingerprint="s2"),
        (Phase.ROTATION_PENDING, (CreateVersion("SourceChanged"),)),
        id="changed-source-before-due",
    ),
    pytest.param(
        Intent(user_supplied=True),
        RULES,
        Observed(current=v(1, DAY, "s1"), source_fingerprint=None),
        (Phase.ACTIVE, ()),
        id="deleted-source-is-no-change",
    ),
    pytest.param(
        Intent(),
        MANUAL,
        Observed(current=v(1, 91 * DAY)),
        (Phase.ROTATION_PENDING, (CreateVersion("Scheduled"),)),
        id="manual-with-generated-source-generates",
    ),
    # K17: a user-supplied value is never replaced by a generated one, whatever the strategy
    pytest.param(
        Intent(user_supplied=True),
        RULES,
        Observed(current=v(1, 91 * DAY, "s1"), source_fingerprint="s1"),
        (Phase.ROTATION_PENDING, ()),
        id="user-supplied-under-generate-waits-when-due",
    ),
    pytest.param(
        Intent(user_supplied=True, rotate_requested_at=T0 - timedelta(minutes=1)),
        RULES,
        Observed(current=v(1, DAY, "s1"), source_fingerprint="s1"),
        (Phase.ROTATION_PENDING, ()),
        id="user-supplied-requested-rotation-waits-for-a-new-value",
    ),
    pytest.param(
        Intent(user_supplied=True, rotate_requested_at=T0 - timedelta(minutes=1)),
        RULES,
        Observed(current=v(1, DAY, "s1"), source_fingerprint="s2"),
        (Phase.ROTATION_PENDING, (CreateVersion("SourceChanged"),)),
        id="user-supplied-requested-rotation-takes-the-new-value",
    ),
    pytest.param(
        Intent(rotate_requested_at=T0 - timedelta(minutes=1)),
        RULES,
        Observed(current=v(1, DAY)),
        (Phase.ROTATION_PENDING, (CreateVersion("Requested"),)),
        id="manual-request",
    ),
    pytest.param(
        Intent(rotate_requested_at=T0 - 2 * DAY),
        RULES,
        Observed(current=v(1, DAY)),
        (Phase.ACTIVE, ()),
        id="old-request-ignored",
    ),
    pytest.param(
        Intent(rotate_requested_at=T0 + DAY),
        RULES,
        Observed(current=v(1, DAY)),
        (Phase.ACTIVE, ()),
        id="future-request-waits",
    ),
    pytest.param(
        Intent(),
        RULES,
        Observed(current=v(2), previous=v(1, DAY, expires_in=timedelta(hours=1))),
        (Phase.ROTATED, ()),
        id="rotated-in-grace",
    ),
    pytest.param(
        Intent(),
        RULES,
        Observed(current=v(2), previous=v(1, DAY, expires_in=timedelta(0))),
        (Phase.ACTIVE, (RetirePrevious(1),)),
        id="grace-elapsed-retires",
    ),
    pytest.param(
        Intent(suspended=True),
        RULES,
        Observed(current=v(1)),
        (Phase.SUSPENDED, ()),
        id="active-to-suspended",
    ),
    pytest.param(
        Intent(suspended=True),
        RULES,
        Observed(current=v(1, 200 * DAY)),
        (Phase.SUSPENDED, ()),
        id="suspended-does-not-rotate",
    ),
    pytest.param(
        Intent(),
        RULES,
        Observed(current=v(1), integrity_failed_at=T0),
        (Phase.SUSPENDED, ()),
        id="integrity-failure-suspends",
    ),
    pytest.param(
        Intent(rotate_requested_at=T0),
        RULES,
        Observed(current=v(1), integrity_failed_at=T0 - DAY),
        (Phase.SUSPENDED, (CreateVersion("Recovery"),)),
        id="recovery-by-rotation",
    ),
    pytest.param(
        Intent(revoked=True),
        RULES,
        Observed(current=v(1)),
        (Phase.REVOKED, (RecordRevocation(),)),
        id="active-to-revoked",
    ),
    pytest.param(
        Intent(revoked=True, suspended=True),
        RULES,
        Observed(current=v(1)),
        (Phase.REVOKED, (RecordRevocation(),)),
        id="suspended-to-revoked",
    ),
    pytest.param(
        Intent(revoked=True),
        RULES,
        Observed(current=v(1), revoked_at=T0 - DAY),
        (Phase.REVOKED, ()),
        id="revoked-waits-retention",
    ),
    pytest.param(
        Intent(revoked=True),
        RULES,
        Observed(current=v(1), revoked_at=T0 - 31 * DAY),
        (Phase.REVOKED, (Erase(),)),
        id="retention-elapsed-erases",
    ),
    pytest.param(
        Intent(revoked=True),
        RULES,
        Observed(),
        (Phase.REVOKED, (Erase(),)),
        id="revoked-before-any-version",
    ),
    pytest.param(
        Intent(revoked=True),
        RULES,
        Observed(erased=True),
        (Phase.DELETED, ()),
        id="erased-is-deleted",
    ),
    pytest.param(
        Intent(revoked=False),
        RULES,
        Observed(erased=True),
        (Phase.DELETED, ()),
        id="deleted-is-final",
    ),
]


@pytest.mark.parametrize(("intent", "rules", "observed", "expected"), EDGES)
def test_edges(
    intent: Intent, rules: Rules, observed: Observed, expected: tuple[Phase, tuple[object, ...]]
) -> None:
    assert phase_and_actions(decide(intent, rules, observed, T0)) == expected


@pytest.mark.parametrize(
    ("observed", "recheck"),
    [
        pytest.param(Observed(current=v(1, DAY)), 89 * DAY, id="active-until-due"),
        pytest.param(
            Observed(current=v(2), previous=v(1, DAY, expires_in=timedelta(hours=2))),
            timedelta(hours=2),
            id="rotated-until-grace-ends",
        ),
    ],
)
def test_timers(observed: Observed, recheck: timedelta) -> None:
    decision = decide(Intent(), RULES, observed, T0)
    assert decision.recheck_after == recheck
    assert decision.next_rotation_at == observed.current.created_at + timedelta(days=90)  # type: ignore[union-attr]


def test_idle_keys_need_no_timer_without_a_period() -> None:
    assert decide(Intent(), Rules(), Observed(current=v(1)), T0).recheck_after is None


def test_revoked_recheck_is_the_erasure_time() -> None:
    d = decide(Intent(revoked=True), RULES, Observed(current=v(1), revoked_at=T0 - DAY), T0)
    assert d.recheck_after == 29 * DAY


def test_a_waiting_user_supplied_key_says_why() -> None:
    intent = Intent(user_supplied=True, rotate_requested_at=T0 - timedelta(minutes=1))
    decision = decide(intent, RULES, Observed(current=v(1, DAY, "s1"), source_fingerprint="s1"), T0)
    (condition,) = decision.conditions
    assert (condition.type, condition.status, condition.reason) == (
        "RotationDue",
        "True",
        "AwaitingNewValue",
    )
    assert "user-supplied" in condition.message


def test_manual_secret_ref_is_polled_while_due() -> None:
    intent = Intent(user_supplied=True, source_polled=True)
    d = decide(intent, MANUAL, Observed(current=v(1, 91 * DAY, "s"), source_fingerprint="s"), T0)
    assert d.recheck_after == timedelta(seconds=30)
    assert any(c.type == "RotationDue" and c.status == "True" for c in d.conditions)


def test_shortening_the_period_makes_an_active_key_due() -> None:
    observed = Observed(current=v(1, 10 * DAY))
    assert decide(Intent(), RULES, observed, T0).phase is Phase.ACTIVE
    shorter = replace(RULES, period=timedelta(days=7))
    assert decide(Intent(), shorter, observed, T0).actions == (CreateVersion("Scheduled"),)


@pytest.mark.parametrize(
    ("age", "rotates", "recheck"),
    [
        pytest.param(
            timedelta(seconds=2),
            False,
            timedelta(minutes=10) - timedelta(seconds=2),
            id="too-soon-waits",
        ),
        pytest.param(timedelta(minutes=10), True, None, id="after-the-interval-rotates"),
    ],
)
def test_requested_rotations_stay_within_the_policys_budget(
    age: timedelta, rotates: bool, recheck: timedelta | None
) -> None:
    """Finding K2: a tenant re-requesting rotations every second makes one version per
    rotation.minInterval at most; the request waits for it, it is not dropped."""
    intent = Intent(rotate_requested_at=T0 - timedelta(seconds=1))
    budgeted = replace(RULES, min_interval=timedelta(minutes=10))
    decision = decide(intent, budgeted, Observed(current=v(2, age)), T0)
    assert (CreateVersion("Requested") in decision.actions) is rotates
    if recheck is not None:
        assert decision.recheck_after == recheck
    unbudgeted = decide(intent, RULES, Observed(current=v(2, timedelta(seconds=2))), T0)
    assert CreateVersion("Requested") in unbudgeted.actions  # no minInterval: no floor


# -- the property: random histories never leave the diagram and never lose a version -----------


def apply(
    observed: Observed, action: object, now: datetime, rules: Rules, intent: Intent
) -> Observed:
    """A model of the reconciler's store writes (versions.py), for the property test."""
    if isinstance(action, CreateVersion):
        old = observed.current
        number = max((x.version for x in (old, observed.previous) if x), default=0) + 1
        source = observed.source_fingerprint if intent.user_supplied else None
        new = VersionFacts(number, now, source)
        previous = None
        if old is not None and action.reason != "Recovery":
            previous = replace(old, expires_at=now + rules.grace)
        return replace(observed, current=new, previous=previous, integrity_failed_at=None)
    if isinstance(action, RetirePrevious):
        return replace(observed, previous=None)
    if isinstance(action, RecordRevocation):
        return replace(observed, revoked_at=now)
    if isinstance(action, Erase):
        return replace(observed, current=None, previous=None, erased=True)
    raise AssertionError(action)


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(1, 200 * 24)),  # hours
        st.tuples(st.just("suspend"), st.booleans()),
        st.tuples(st.just("revoke"), st.just(True)),
        st.tuples(st.just("request"), st.integers(-2, 2)),
        st.tuples(st.just("source"), st.sampled_from(["s1", "s2", "s3", None])),
        st.tuples(st.just("integrity"), st.just(True)),
        st.tuples(st.just("period"), st.sampled_from([None, 1, 24, 90 * 24])),
        st.tuples(st.just("crash"), st.just(True)),
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(events=EVENTS, manual=st.booleans(), user_supplied=st.booleans())
def test_random_histories_stay_legal(
    events: list[tuple[str, object]], manual: bool, user_supplied: bool
) -> None:
    now = T0
    rules = replace(
        RULES, strategy=RotationStrategy.MANUAL if manual else RotationStrategy.GENERATE
    )
    intent = Intent(user_supplied=user_supplied)
    observed = Observed(source_fingerprint="s1" if user_supplied else None)
    phase: Phase | None = None
    ever_current = False
    for kind, arg in events:
        pending_crash = False
        if kind == "advance":
            now += timedelta(hours=int(arg))  # type: ignore[call-overload]
        elif kind == "suspend":
            intent = replace(intent, suspended=bool(arg))
        elif kind == "revoke":
            intent = replace(intent, revoked=True)
        elif kind == "request":
            intent = replace(intent, rotate_requested_at=now + timedelta(hours=int(arg)))  # type: ignore[call-overload]
        elif kind == "source" and user_supplied:
            observed = replace(observed, source_fingerprint=arg)  # type: ignore[arg-type]
        elif kind == "integrity" and observed.current is not None:
            observed = replace(observed, integrity_failed_at=now)
        elif kind == "period":
            rules = replace(rules, period=timedelta(hours=int(arg)) if arg else None)  # type: ignore[call-overload]
        elif kind == "crash":
            pending_crash = True  # the reconcile below dies after its first action
        for step in range(10):
            decision = decide(intent, rules, observed, now)
            if phase is not None and decision.phase != phase:
                assert (phase, decision.phase) in ALLOWED, f"{phase} -> {decision.phase}"
            phase = decision.phase
            if not decision.actions or (pending_crash and step > 0):
                break  # converged, or the operator died and its successor has just looked
            for action in decision.actions:
                observed = apply(observed, action, now, rules, intent)
                if pending_crash:
                    break  # killed right after the first write
            assert step < 9, "decide() did not converge"
        if observed.current is not None:
            ever_current = True
        if ever_current and not observed.erased:
            assert observed.current is not None, "the current version was lost"
        if phase is Phase.DELETED:
            assert observed.current is None and observed.previous is None
        if phase in (Phase.ACTIVE, Phase.ROTATED, Phase.ROTATION_PENDING):
            assert observed.current is not None
            assert not intent.revoked and not intent.suspended


SATURDAY_NIGHTS = replace(RULES, window=Window.of(["Sat"], "02:00-04:00", "UTC"))  # T0: Thursday


@pytest.mark.parametrize(
    ("observed", "intent", "now", "rotates", "next_at"),
    [
        # due a day ago, the window opens on Saturday 02:00: waits, and says when
        (Observed(current=v(1, 91 * DAY)), Intent(), T0, None, datetime(2026, 1, 3, 2, tzinfo=UTC)),
        # in the window: rotates
        (Observed(current=v(1, 91 * DAY)), Intent(), datetime(2026, 1, 3, 2, 30, tzinfo=UTC),
         "Scheduled", None),
        # due in 80 days (Sunday 2026-03-22): at the next Saturday's opening after that
        (Observed(current=v(1, 10 * DAY)), Intent(), T0, None, datetime(2026, 3, 28, 2, tzinfo=UTC)),
        # a requested rotation never waits for the window
        (Observed(current=v(1, DAY)), Intent(rotate_requested_at=T0 - timedelta(minutes=1)), T0,
         "Requested", None),
    ],
)  # fmt: skip
def test_a_rotation_window_holds_back_scheduled_rotations_only(
    observed: Observed, intent: Intent, now: datetime, rotates: str | None, next_at: datetime | None
) -> None:
    d = decide(intent, SATURDAY_NIGHTS, observed, now)
    if rotates is not None:
        assert d.actions == (CreateVersion(rotates),)
        return
    assert d.actions == () and d.phase is Phase.ACTIVE
    assert d.next_rotation_at == next_at
    assert d.recheck_after == next_at - now  # type: ignore[operator]
    (due,) = d.conditions
    assert "in the rotation window Sat 02:00-04:00 UTC" in due.message
