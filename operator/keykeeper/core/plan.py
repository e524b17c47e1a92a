"""The projection plan of one ApiKey: what to keep, write, withdraw and deny — pure.

Authorization (``authz.plan``) says, per requested target, whether the key may be
projected there. This module turns those decisions and the Secrets keykeeper holds
for the key now into a plan, with the fail-closed rules of DESIGN.md §2 built in:

* Withdrawals need no value and no provider, so they are planned from decisions and
  existing Secrets alone; the reconciler executes them before anything that could
  fail on a provider, a source or a value.
* Every projected Secret the key holds whose slot is not an authorized, wanted
  target is withdrawn, whatever the reason (revoked, suspended, unauthorized,
  renamed, policy gone, namespace gone).
* Status names only what the tenant may know: authorized targets, and denied targets
  the author named explicitly, with one public reason for "not authorized" and "does
  not exist" (so status is no oracle for namespace names, labels or existence).
  Targets a selector expanded to and that are denied are only counted. A name taken in
  a namespace other than the key's own reads as "not authorized" too (K6: status is no
  oracle for which Secrets exist where the tenant cannot list them).
* At most ``MAX_TARGETS`` authorized targets are projected per key; the rest are
  counted and reported by a condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from keykeeper.api.reasons import Reason
from keykeeper.core.authz import Decision, Target
from keykeeper.types import Slot

MAX_TARGETS = 128

# Reasons a tenant may see for a denied target; the others fold into Reason.NOT_AUTHORIZED
# (SecretNameTaken is said only in the key's own namespace: ``clash``).
PUBLIC_REASONS = frozenset(
    {
        Reason.POLICY_NOT_FOUND,
        Reason.KEY_NOT_PROJECTING,
        Reason.SOURCE_NOT_ALLOWED,
        Reason.DUPLICATE_TARGET,
        Reason.TOO_MANY_TARGETS,
        Reason.SECRET_NAME_NOT_ALLOWED,
    }
)


class TargetState(StrEnum):
    PROJECTED = "Projected"
    DENIED = "Denied"
    WITHDRAWN = "Withdrawn"
    WITHDRAWING = "Withdrawing"  # deleted and emptied, kept by someone else's finalizer
    FAILED = "Failed"


@dataclass(frozen=True)
class Held:
    """A projected Secret this key holds now (ownership proven), as the watch saw it."""

    namespace: str
    name: str
    uid: str

    @property
    def slot(self) -> Slot:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Denial:
    target: Target
    reason: str
    message: str

    @property
    def named(self) -> bool:
        """Shown by name in status: the author named it, and nothing is revealed by it."""
        return not self.target.selected or self.reason == Reason.TOO_MANY_TARGETS


@dataclass(frozen=True)
class Plan:
    keep: tuple[Target, ...]  # authorized and in sync: nothing to do
    write: tuple[Target, ...]  # authorized and missing or out of date: needs the value
    withdraw: tuple[Held, ...]  # held but not wanted: delete, no value needed
    deny: tuple[Denial, ...]

    @property
    def wanted(self) -> frozenset[Slot]:
        return frozenset((t.namespace, t.secret_name) for t in (*self.keep, *self.write))


def public(decision: Decision, target: Target) -> Decision:
    """The decision as the tenant may see it: "not authorized", "not there" and
    "terminating" read the same, word for word."""
    if decision.reason in PUBLIC_REASONS:
        return decision
    return Decision(
        False,
        Reason.NOT_AUTHORIZED,
        f"the policy does not allow projection into {target.namespace}, "
        "or that namespace does not exist",
    )


def clash(target: Target, home: str) -> Denial:
    """A target whose name another Secret holds: said as such only in the key's own
    namespace ``home`` (which its author can list), elsewhere as "not authorized"."""
    where = f"{target.namespace}/{target.secret_name}"
    if target.namespace != home:
        shown = public(Decision(False, Reason.SECRET_NAME_TAKEN, ""), target)
        return Denial(target, shown.reason, shown.message)
    return Denial(
        target,
        Reason.SECRET_NAME_TAKEN,
        f"{where} exists and is not this key's; keykeeper never overwrites a Secret it "
        "does not manage",
    )


def make(
    decisions: Sequence[tuple[Target, Decision]],
    held: Iterable[Held],
    synced: frozenset[Slot] = frozenset(),
    taken: frozenset[Slot] = frozenset(),
    max_targets: int = MAX_TARGETS,
    home: str = "",
) -> Plan:
    """The plan for one key in namespace ``home``. ``synced``: held slots that already
    hold exactly what their target wants; ``taken``: slots another key's projection
    occupies."""
    by_slot = {h.slot: h for h in held}
    keep: list[Target] = []
    write: list[Target] = []
    deny: list[Denial] = []
    authorized = 0
    for target, decision in decisions:
        slot = (target.namespace, target.secret_name)
        if not decision.allowed:
            shown = public(decision, target)
            deny.append(Denial(target, shown.reason, shown.message))
            continue
        if slot in taken:
            deny.append(clash(target, home))
            continue
        authorized += 1
        if authorized > max_targets:
            deny.append(
                Denial(
                    target,
                    Reason.TOO_MANY_TARGETS,
                    f"the key is projected into at most {max_targets} namespaces",
                )
            )
            continue
        (keep if slot in by_slot and slot in synced else write).append(target)
    wanted = {(t.namespace, t.secret_name) for t in (*keep, *write)}
    withdraw = tuple(h for slot, h in sorted(by_slot.items()) if slot not in wanted)
    return Plan(tuple(keep), tuple(write), withdraw, tuple(deny))
