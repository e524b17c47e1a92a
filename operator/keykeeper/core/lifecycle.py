"""The key lifecycle (DESIGN.md §4) as a pure function.

::

    Generated --activate--> Active --period elapsed--> RotationPending --new version--> Rotated
    Rotated --grace elapsed--> Active
    Active <--> Suspended            (spec.suspended, or automatically on an integrity failure)
    any phase but Deleted --spec.revoked--> Revoked --retention elapsed--> Deleted

``decide(intent, rules, observed, now)`` says which phase a key is in *now*, which
actions move it on (data, applied by the reconciler), which conditions to show, and
when to look again. The phase is derived from facts the operator persists (the store's
versions and its revocation and integrity records), never from the last status it
wrote, so a crash or a lost status cannot put a key in a phase its facts deny.

Rules a reader might not guess:
* A rotation is two-phase: ``CreateVersion`` stores the new version (and makes the old
  one Previous, expiring after the grace period) before any projection switches.
* ``Generate`` rotates by itself when the period has elapsed; ``Manual`` shows
  RotationDue and waits for a new source value. A changed user-supplied source (a new
  sealed value, a changed secretRef value) always makes a new version: it is what
  the user asked for. So does ``keykeeper.dev/rotate-requested-at`` newer than the
  current version (one in the future, or within ``rotation.minInterval`` of the current
  version, is honoured when its time comes).
* At most one Previous version exists; rotating during a grace period retires the
  older one at once.
* An integrity failure suspends the key until a rotation is requested, which makes
  a fresh version from the source (the damaged one cannot be trusted).
* Suspension keeps all material and pauses rotation; revocation withdraws at once and
  erases every envelope after ``retention.revokedFor``.
* A ``rotation.window`` holds back only scheduled rotations (``api.windows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from keykeeper.api.conditions import READY, ROTATION_DUE, Condition
from keykeeper.api.models import Phase, RotationStrategy
from keykeeper.api.reasons import Reason, RotationCause
from keykeeper.api.timestamps import rfc3339
from keykeeper.api.windows import Window
from keykeeper.core.expiry import before_expiry

MANUAL_POLL = timedelta(seconds=30)

# Every step decide() can take, as (from, to); asserted by the property tests.
ALLOWED: frozenset[tuple[Phase, Phase]] = frozenset(
    {
        (Phase.GENERATED, Phase.ACTIVE),
        (Phase.GENERATED, Phase.SUSPENDED),
        (Phase.ACTIVE, Phase.ROTATION_PENDING),
        (Phase.ACTIVE, Phase.SUSPENDED),
        (Phase.ROTATION_PENDING, Phase.ROTATED),
        (Phase.ROTATION_PENDING, Phase.ACTIVE),  # the policy changed: rotation is not due any more
        (Phase.ROTATION_PENDING, Phase.SUSPENDED),
        (Phase.ROTATED, Phase.ACTIVE),
        (Phase.ROTATED, Phase.ROTATION_PENDING),
        (Phase.ROTATED, Phase.SUSPENDED),
        (Phase.SUSPENDED, Phase.ACTIVE),
        (Phase.SUSPENDED, Phase.ROTATION_PENDING),
        (Phase.SUSPENDED, Phase.ROTATED),
        (Phase.REVOKED, Phase.DELETED),
    }
    | {(phase, Phase.REVOKED) for phase in Phase if phase not in (Phase.REVOKED, Phase.DELETED)}
)


@dataclass(frozen=True)
class VersionFacts:
    version: int
    created_at: datetime
    source_fingerprint: str | None = None
    expires_at: datetime | None = None
    value_expires_at: datetime | None = None  # an issued key's, as its issuer said


@dataclass(frozen=True)
class Intent:
    """What the ApiKey's spec (and its rotate annotation) asks for."""

    suspended: bool = False
    revoked: bool = False
    rotate_requested_at: datetime | None = None
    user_supplied: bool = False  # the value comes from sealed or secretRef
    source_polled: bool = False  # a secretRef: changes are seen only by looking


@dataclass(frozen=True)
class Rules:
    """What the KeyPolicy says about time."""

    period: timedelta | None = None
    grace: timedelta = timedelta(hours=24)
    min_interval: timedelta = timedelta(0)  # a requested rotation waits this long after the last
    strategy: RotationStrategy = RotationStrategy.GENERATE
    revoked_for: timedelta = timedelta(days=30)
    window: Window | None = None  # scheduled rotations only happen while it is open

    def scheduled(self, made: datetime, now: datetime) -> datetime | None:
        """The scheduled rotation: a period after ``made``, held for the window's opening."""
        due = made + self.period if self.period else None
        return self.window.next_open(max(due, now)) if due and self.window else due


@dataclass(frozen=True)
class Observed:
    """Facts the operator persisted in the store, and the source as it is now."""

    current: VersionFacts | None = None
    previous: VersionFacts | None = None
    revoked_at: datetime | None = None
    erased: bool = False
    integrity_failed_at: datetime | None = None
    source_fingerprint: str | None = None


@dataclass(frozen=True)
class CreateVersion:
    reason: RotationCause


@dataclass(frozen=True)
class RetirePrevious:
    version: int


@dataclass(frozen=True)
class RecordRevocation:
    pass


@dataclass(frozen=True)
class Erase:
    pass


Action = CreateVersion | RetirePrevious | RecordRevocation | Erase


@dataclass(frozen=True)
class Decision:
    phase: Phase
    actions: tuple[Action, ...] = ()
    conditions: tuple[Condition, ...] = ()
    recheck_after: timedelta | None = None
    next_rotation_at: datetime | None = None


def decide(intent: Intent, rules: Rules, observed: Observed, now: datetime) -> Decision:
    if observed.erased:
        return Decision(
            Phase.DELETED,
            conditions=(
                Condition(
                    READY,
                    "True",
                    Reason.ERASED,
                    "the key was revoked and its material erased; "
                    "delete the ApiKey to remove the tombstone",
                ),
            ),
        )
    if intent.revoked:
        return _revoked(rules, observed, now)
    current = observed.current
    if current is None:
        return Decision(Phase.GENERATED, (CreateVersion(RotationCause.INITIAL),))
    if observed.integrity_failed_at is not None:
        requested = intent.rotate_requested_at
        if requested is not None and observed.integrity_failed_at < requested <= now:
            return Decision(Phase.SUSPENDED, (CreateVersion(RotationCause.RECOVERY),))
        return Decision(
            Phase.SUSPENDED,
            conditions=(
                Condition(
                    READY,
                    "False",
                    Reason.INTEGRITY_FAILURE,
                    "a stored version failed to authenticate, so the key was suspended and its "
                    "projections withdrawn; request a rotation (annotation "
                    "keykeeper.dev/rotate-requested-at) to make a fresh version",
                ),
            ),
        )
    if intent.suspended:
        return Decision(
            Phase.SUSPENDED,
            conditions=(
                Condition(
                    READY,
                    "True",
                    Reason.SUSPENDED,
                    "spec.suspended: projections withdrawn, material kept",
                ),
            ),
        )
    return _projecting(intent, rules, observed, current, now)


def _revoked(rules: Rules, observed: Observed, now: datetime) -> Decision:
    if observed.current is None and observed.previous is None:
        return Decision(Phase.REVOKED, (Erase(),))  # nothing was ever stored
    if observed.revoked_at is None:
        return Decision(Phase.REVOKED, (RecordRevocation(),))
    erase_at = observed.revoked_at + rules.revoked_for
    if now >= erase_at:
        return Decision(Phase.REVOKED, (Erase(),))
    return Decision(
        Phase.REVOKED,
        conditions=(
            Condition(
                READY, "True", Reason.REVOKED, f"revoked; material erased at {rfc3339(erase_at)}"
            ),
        ),
        recheck_after=erase_at - now,
    )


def _projecting(
    intent: Intent, rules: Rules, observed: Observed, current: VersionFacts, now: datetime
) -> Decision:
    actions: list[Action] = []
    waits: list[timedelta] = []
    previous = observed.previous
    if previous is not None and previous.expires_at is not None and previous.expires_at <= now:
        actions.append(RetirePrevious(previous.version))
        previous = None
    elif previous is not None and previous.expires_at is not None:
        waits.append(previous.expires_at - now)

    scheduled = rules.scheduled(current.created_at, now)
    due_at = before_expiry(scheduled, current.created_at, current.value_expires_at, rules.grace)
    requested = intent.rotate_requested_at
    if requested is not None and requested > current.created_at:  # at most one per minInterval
        requested = max(requested, current.created_at + rules.min_interval)
    if requested is not None and requested > current.created_at and requested > now:
        waits.append(requested - now)  # a request from the future is honoured when it arrives
    conditions: list[Condition] = []
    rotation: CreateVersion | None = None
    # A user-supplied value (sealed, imported) rotates only when its source does: a
    # requested or scheduled rotation waits for a new source value, whatever the
    # strategy. Generating one instead would replace the user's real credential with a
    # random string and stop following its source (finding K17).
    if _source_changed(intent, observed, current):
        rotation = CreateVersion(RotationCause.SOURCE_CHANGED)
    elif requested is not None and current.created_at < requested <= now:
        if intent.user_supplied:
            return _await_source(intent, actions, waits, requested, due_at)
        rotation = CreateVersion(RotationCause.REQUESTED)
    elif due_at is not None and now >= due_at:
        if intent.user_supplied:
            return _await_source(intent, actions, waits, due_at, due_at)
        rotation = CreateVersion(RotationCause.SCHEDULED)
    if rotation is not None:
        return Decision(
            Phase.ROTATION_PENDING,
            (*actions, rotation),
            (Condition(ROTATION_DUE, "True", rotation.reason, "a new version is being made"),),
        )
    if due_at is not None:
        waits.append(due_at - now)
    where = f", in the rotation window {rules.window.describe()}" if rules.window else ""
    not_due = f"next rotation at {rfc3339(due_at)}{where}" if due_at else "no rotation period"
    conditions.append(Condition(ROTATION_DUE, "False", Reason.NOT_DUE, not_due))
    phase = Phase.ROTATED if previous is not None else Phase.ACTIVE
    return Decision(phase, tuple(actions), tuple(conditions), min(waits, default=None), due_at)


def _source_changed(intent: Intent, observed: Observed, current: VersionFacts) -> bool:
    """A user-supplied source now differs from the one the current version came from."""
    return (
        intent.user_supplied
        and observed.source_fingerprint is not None
        and current.source_fingerprint is not None
        and observed.source_fingerprint != current.source_fingerprint
    )


def _await_source(
    intent: Intent,
    actions: list[Action],
    waits: list[timedelta],
    due_at: datetime,
    next_rotation: datetime | None,
) -> Decision:
    """RotationPending until the user-supplied source changes; a source Secret is
    polled, a sealed value arrives with a new generation."""
    if intent.source_polled:
        waits.append(MANUAL_POLL)
    condition = Condition(
        ROTATION_DUE,
        "True",
        Reason.AWAITING_NEW_VALUE,
        f"rotation was due at {rfc3339(due_at)}; the value is user-supplied, so keykeeper "
        "waits for a new source value (a new sealed value, or a changed source Secret)",
    )
    waited = min(waits, default=None)
    return Decision(Phase.ROTATION_PENDING, tuple(actions), (condition,), waited, next_rotation)
