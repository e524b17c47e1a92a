"""The projection plan and the status composed from it: fail-closed rules as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keykeeper.api.models import Phase
from keykeeper.api.reasons import Reason
from keykeeper.core import authz, plan
from keykeeper.core.authz import Decision, Target
from keykeeper.core.plan import Held, TargetState
from keykeeper.core.status import TargetResult, compose, counts, mark_withdrawn
from tests.unit.builders import apikey_spec, key, ns, policy

OK = Decision(True, Reason.AUTHORIZED, "ok")


def target(namespace: str, *, selected: bool = False) -> Target:
    return Target(namespace, "k", "api-key", selected=selected)


def denied(reason: str) -> Decision:
    return Decision(False, reason, f"because {reason}")


@pytest.mark.parametrize(
    ("decisions", "held", "synced", "taken", "expect"),
    [
        pytest.param(
            [(target("a"), OK)], [], set(), set(), ("", "a", "", ""), id="new-target-written"
        ),
        pytest.param(
            [(target("a"), OK)],
            [Held("a", "k", "u1")],
            {("a", "k")},
            set(),
            ("a", "", "", ""),
            id="in-sync-kept",
        ),
        pytest.param(
            [(target("a"), OK)],
            [Held("a", "k", "u1")],
            set(),
            set(),
            ("", "a", "", ""),
            id="drifted-rewritten",
        ),
        pytest.param(
            [(target("a"), denied(Reason.NOT_AUTHORIZED))],
            [Held("a", "k", "u1")],
            {("a", "k")},
            set(),
            ("", "", "a", "a"),
            id="unauthorized-withdrawn-even-if-in-sync",
        ),
        pytest.param(
            [],
            [Held("gone", "k", "u1")],
            set(),
            set(),
            ("", "", "gone", ""),
            id="no-longer-requested-withdrawn",
        ),
        pytest.param(
            [(target("a"), OK)],
            [],
            set(),
            {("a", "k")},
            ("", "", "", "a"),
            id="another-keys-slot-taken",
        ),
    ],
)
def test_plan(decisions, held, synced, taken, expect) -> None:  # type: ignore[no-untyped-def]
    made = plan.make(decisions, held, frozenset(synced), frozenset(taken))
    got = (
        ",".join(t.namespace for t in made.keep),
        ",".join(t.namespace for t in made.write),
        ",".join(h.namespace for h in made.withdraw),
        ",".join(d.target.namespace for d in made.deny),
    )
    assert got == expect


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        (Reason.NAMESPACE_NOT_FOUND, Reason.NOT_AUTHORIZED),
        (Reason.NAMESPACE_TERMINATING, Reason.NOT_AUTHORIZED),
        (Reason.NOT_AUTHORIZED, Reason.NOT_AUTHORIZED),
        (Reason.KEY_NOT_PROJECTING, Reason.KEY_NOT_PROJECTING),
        (Reason.DUPLICATE_TARGET, Reason.DUPLICATE_TARGET),
    ],
)
def test_status_is_no_oracle_for_namespace_existence(reason: str, shown: str) -> None:
    made = plan.make([(target("x"), denied(reason))], [])
    (denial,) = made.deny
    assert denial.reason == shown
    if shown == Reason.NOT_AUTHORIZED:
        assert denial.message == plan.public(denied(Reason.NOT_AUTHORIZED), target("x")).message


def test_selector_denials_are_counted_not_named() -> None:
    made = plan.make(
        [(target("named"), denied(Reason.NOT_AUTHORIZED))]
        + [(target(f"s{n}", selected=True), denied(Reason.NOT_AUTHORIZED)) for n in range(500)],
        [],
    )
    assert [d.named for d in made.deny].count(True) == 1


def test_authorized_targets_are_capped() -> None:
    made = plan.make([(target(f"t{n:03}"), OK) for n in range(10)], [], max_targets=4)
    assert [t.namespace for t in made.write] == ["t000", "t001", "t002", "t003"]
    assert {d.reason for d in made.deny} == {Reason.TOO_MANY_TARGETS}
    assert all(d.named for d in made.deny)


def test_the_operators_namespace_is_never_a_source_or_target() -> None:
    reserved = frozenset({"keykeeper-system"})
    everything = policy(sources={"selector": {}}, target_selector={})
    home = key("home")
    inside = authz.KeyContext(ns("keykeeper-system"), Phase.ACTIVE, reserved)
    assert not authz.admits_source(inside, everything)
    own = authz.KeyContext(home.namespace, Phase.ACTIVE, reserved)
    decision = authz.authorize(own, everything, "keykeeper-system", ns("keykeeper-system"))
    assert (decision.allowed, decision.reason) == (False, Reason.NOT_AUTHORIZED)


def test_selected_targets_are_marked() -> None:
    spec = apikey_spec({"namespace": "a"}, {"namespaceSelector": {}})
    found = authz.requested_targets(spec, "k", [ns("a"), ns("b")])
    assert [(t.namespace, t.selected) for t, _ in found] == [
        ("a", False),
        ("a", True),
        ("b", True),
    ]


def result(
    namespace: str, state: TargetState, reason: str = "", named: bool = True
) -> TargetResult:
    return TargetResult(namespace, "k", state, reason, named=named)


def test_status_counts_everything_and_names_only_the_named() -> None:
    results = [
        result("a", TargetState.PROJECTED),
        result("b", TargetState.FAILED, "WriteFailed"),
        result("c", TargetState.DENIED, Reason.NOT_AUTHORIZED),
        *[
            result(f"s{n}", TargetState.DENIED, Reason.NOT_AUTHORIZED, named=False)
            for n in range(9)
        ],
    ]
    status = compose(
        {},
        phase=Phase.ACTIVE,
        versions=(),
        current=1,
        next_rotation_at=None,
        ready=authz_ready(),
        extra=(),
        results=results,
        generation=3,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert [p["namespace"] for p in status["projections"]] == ["a", "b", "c"]
    assert status["targets"] == {"requested": 12, "projected": 1, "denied": 10, "failed": 1}
    assert counts(results)["requested"] == 12


def authz_ready():  # type: ignore[no-untyped-def]
    from keykeeper.api.conditions import READY, Condition

    return Condition(READY, "True", "Ready", "ok")


def test_a_denied_target_that_was_projected_is_reported_withdrawn() -> None:
    before = [{"namespace": "a", "secretName": "k", "state": "Projected"}]
    (after,) = mark_withdrawn([result("a", TargetState.DENIED, Reason.NOT_AUTHORIZED)], before)
    assert after.state is TargetState.WITHDRAWN
    (taken,) = mark_withdrawn([result("a", TargetState.DENIED, Reason.SECRET_NAME_TAKEN)], before)
    assert taken.state is TargetState.DENIED


def test_a_withdrawn_secret_a_finalizer_keeps_is_withdrawing_until_gone() -> None:
    before = [{"namespace": "a", "secretName": "k", "state": "Projected"}]
    denied = [result("a", TargetState.DENIED, Reason.NOT_AUTHORIZED)]
    (held,) = mark_withdrawn(denied, before, {("a", "k")})
    assert held.state is TargetState.WITHDRAWING and held.version is None
    assert counts([held])["denied"] == 1
    (gone,) = mark_withdrawn(denied, [held.to_status()])
    assert gone.state is TargetState.WITHDRAWN, "once gone, Withdrawn"


def test_a_name_taken_elsewhere_reads_as_not_authorized_and_at_home_as_taken() -> None:
    """K6: status is no oracle for which Secrets exist where the author cannot list."""
    elsewhere, home = Target("api", "db-password", "api-key"), Target("home", "db", "api-key")
    made = plan.make(
        [(elsewhere, OK), (home, OK)],
        [],
        taken=frozenset({("api", "db-password"), ("home", "db")}),
        home="home",
    )
    shown = {d.target.namespace: d for d in made.deny}
    unauthorized = plan.public(denied(Reason.NAMESPACE_NOT_FOUND), elsewhere)
    assert (shown["api"].reason, shown["api"].message) == (
        Reason.NOT_AUTHORIZED,
        unauthorized.message,
    )
    assert shown["home"].reason == Reason.SECRET_NAME_TAKEN
    consent = plan.public(denied(Reason.TARGET_NOT_CONSENTING), elsewhere)
    assert (consent.reason, consent.message) == (Reason.NOT_AUTHORIZED, unauthorized.message)
