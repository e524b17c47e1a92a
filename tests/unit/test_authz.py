"""Authorization (DESIGN.md §2) as a table, and as a property against a simple oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keykeeper.api.models import Phase
from keykeeper.api.reasons import Reason
from keykeeper.core.authz import NamespaceInfo, authorize, plan
from tests.unit.builders import apikey_spec, key, ns, policy

CASES = [
    pytest.param(
        key(), policy(), "home", ns("home"), True, Reason.AUTHORIZED, id="own-namespace-by-default"
    ),
    pytest.param(
        key(),
        policy(own=False),
        "home",
        ns("home"),
        False,
        Reason.NOT_AUTHORIZED,
        id="own-namespace-disallowed",
    ),
    pytest.param(
        key(),
        policy(),
        "elsewhere",
        ns("elsewhere"),
        False,
        Reason.NOT_AUTHORIZED,
        id="absent-targets-means-own-only",
    ),
    pytest.param(
        key(), policy(targets=["api"]), "api", ns("api"), True, Reason.AUTHORIZED, id="named-target"
    ),
    pytest.param(
        key(),
        policy(target_selector={"tier": "prod"}),
        "t",
        ns("t", tier="prod"),
        True,
        Reason.AUTHORIZED,
        id="selected-target",
    ),
    pytest.param(
        key(),
        policy(target_selector={"tier": "prod"}),
        "t",
        ns("t", tier="dev"),
        False,
        Reason.NOT_AUTHORIZED,
        id="selector-on-current-labels",
    ),
    pytest.param(
        key(),
        policy(targets=["api"]),
        "api",
        None,
        False,
        Reason.NAMESPACE_NOT_FOUND,
        id="missing-namespace",
    ),
    pytest.param(
        key(),
        policy(targets=["api"]),
        "api",
        ns("api", terminating=True),
        False,
        Reason.NAMESPACE_TERMINATING,
        id="terminating-namespace",
    ),
    pytest.param(key(), None, "home", ns("home"), False, Reason.POLICY_NOT_FOUND, id="no-policy"),
    pytest.param(
        key(),
        policy(sources={"names": ["other"]}),
        "home",
        ns("home"),
        False,
        Reason.SOURCE_NOT_ALLOWED,
        id="source-not-named",
    ),
    pytest.param(
        key(team="a"),
        policy(sources={"selector": {"matchLabels": {"team": "a"}}}),
        "home",
        ns("home"),
        True,
        Reason.AUTHORIZED,
        id="source-selected",
    ),
    pytest.param(
        key(team="b"),
        policy(sources={"selector": {"matchLabels": {"team": "a"}}}),
        "home",
        ns("home"),
        False,
        Reason.SOURCE_NOT_ALLOWED,
        id="source-not-selected",
    ),
    pytest.param(
        key(phase=Phase.SUSPENDED),
        policy(),
        "home",
        ns("home"),
        False,
        Reason.KEY_NOT_PROJECTING,
        id="suspended-key",
    ),
    pytest.param(
        key(phase=Phase.REVOKED),
        policy(),
        "home",
        ns("home"),
        False,
        Reason.KEY_NOT_PROJECTING,
        id="revoked-key",
    ),
    pytest.param(
        key(phase=Phase.GENERATED),
        policy(),
        "home",
        ns("home"),
        False,
        Reason.KEY_NOT_PROJECTING,
        id="generated-key",
    ),
    pytest.param(
        key(phase=Phase.ROTATED),
        policy(),
        "home",
        ns("home"),
        True,
        Reason.AUTHORIZED,
        id="rotated-key-projects",
    ),
    pytest.param(
        key(phase=Phase.ROTATION_PENDING),
        policy(),
        "home",
        ns("home"),
        True,
        Reason.AUTHORIZED,
        id="pending-key-projects",
    ),
]


@pytest.mark.parametrize(("who", "pol", "target_name", "target", "allowed", "reason"), CASES)
def test_authorize(who, pol, target_name, target, allowed, reason) -> None:  # type: ignore[no-untyped-def]
    decision = authorize(who, pol, target_name, target)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert decision.message


def test_plan_expands_selectors_and_reports_duplicates() -> None:
    namespaces = {n.name: n for n in (ns("home"), ns("a", app="x"), ns("b", app="x"), ns("c"))}
    spec = apikey_spec(
        {"namespaceSelector": {"matchLabels": {"app": "x"}}},
        {"namespace": "a"},
        {"namespace": "c", "secretName": "other"},
    )
    result = plan(key(), spec, "k", policy(targets=["a", "b"]), namespaces)
    summary = [(t.namespace, t.secret_name, d.reason) for t, d in result]
    assert summary == [
        ("a", "k", Reason.AUTHORIZED),
        ("b", "k", Reason.AUTHORIZED),
        ("a", "k", Reason.DUPLICATE_TARGET),
        ("c", "other", Reason.NOT_AUTHORIZED),
    ]


EVERYWHERE = {"namespaceSelector": {}}


@pytest.mark.parametrize(
    ("who", "pol", "expanded"),
    [
        pytest.param(key(), policy(targets=["a"]), ["a", "home"], id="only-the-policys-targets"),
        pytest.param(key(), policy(), ["home"], id="no-targets-own-namespace-only"),
        pytest.param(key(), policy(targets=["a"], own=False), ["a"], id="own-namespace-disallowed"),
        pytest.param(key(), None, [], id="no-policy-nothing-expanded"),
        pytest.param(
            key(), policy(sources={"names": ["other"]}, targets=["a"]), [], id="source-not-admitted"
        ),
        pytest.param(
            key(phase=Phase.SUSPENDED),
            policy(targets=["a"]),
            ["a", "home"],
            id="whatever-the-phase",
        ),
    ],
)
def test_a_selector_expands_only_inside_what_the_policy_reaches(who, pol, expanded) -> None:  # type: ignore[no-untyped-def]
    """Finding K7: a selector over every namespace counted namespaces (and so labels) the
    tenant may not list, even with no policy at all. It now expands only to namespaces
    the policy could authorize, so nothing about the others reaches status or Events."""
    namespaces = {
        n.name: n for n in (ns("home"), ns("a"), ns("b", secret="yes"), ns("kube-system"))
    }
    result = plan(who, apikey_spec(EVERYWHERE), "k", pol, namespaces)
    assert sorted(t.namespace for t, _ in result) == expanded


# -- the property: authorize agrees with a deliberately naive oracle -----------------------------

LABELS = st.dictionaries(st.sampled_from(["team", "tier"]), st.sampled_from(["a", "b"]), max_size=2)
NAMES = st.sampled_from(["home", "api", "web", "ops"])


def oracle(
    key_ns: str,
    key_labels: dict[str, str],
    phase: Phase,
    src_names: list[str],
    src_sel: dict[str, str] | None,
    tgt: dict[str, object] | None,
    target: str,
    target_labels: dict[str, str] | None,
    terminating: bool,
) -> bool:
    def sel_match(sel: dict[str, str] | None, labels: dict[str, str]) -> bool:
        return sel is not None and all(labels.get(k) == v for k, v in sel.items())

    source_ok = key_ns in src_names or sel_match(src_sel, key_labels)
    exists = target_labels is not None and not terminating
    if tgt is None:
        target_ok = target == key_ns
    else:
        own = bool(tgt["own"]) and target == key_ns
        target_ok = own or target in tgt["names"] or sel_match(tgt["sel"], target_labels or {})  # type: ignore[arg-type, operator]
    projects = phase in (Phase.ACTIVE, Phase.ROTATION_PENDING, Phase.ROTATED)
    return source_ok and exists and target_ok and projects


@settings(max_examples=400, deadline=None)
@given(
    key_ns=NAMES,
    key_labels=LABELS,
    phase=st.sampled_from(list(Phase)),
    src_names=st.lists(NAMES, max_size=2),
    src_sel=st.none() | LABELS,
    tgt=st.none()
    | st.fixed_dictionaries(
        {"names": st.lists(NAMES, max_size=2), "sel": st.none() | LABELS, "own": st.booleans()}
    ),
    target=NAMES,
    target_labels=st.none() | LABELS,
    terminating=st.booleans(),
)
def test_authorize_matches_the_oracle(
    key_ns,
    key_labels,
    phase,
    src_names,
    src_sel,
    tgt,
    target,  # type: ignore[no-untyped-def]
    target_labels,
    terminating,
) -> None:
    sources: dict[str, object] = {"names": src_names}
    if src_sel is not None:
        sources["selector"] = {"matchLabels": src_sel}
    if not src_names and src_sel is None:
        sources = {"names": []}
    body: dict[str, object] = {"sourceNamespaces": sources}
    if tgt is not None:
        targets: dict[str, object] = {"names": tgt["names"], "allowOwnNamespace": tgt["own"]}
        if tgt["sel"] is not None:
            targets["selector"] = {"matchLabels": tgt["sel"]}
        body["targetNamespaces"] = targets
    from keykeeper.api.models import parse_policy_spec

    pol = parse_policy_spec(body)
    who = key(key_ns, phase, **key_labels)
    info = None if target_labels is None else NamespaceInfo(target, target_labels, terminating)
    expected = oracle(
        key_ns, key_labels, phase, src_names, src_sel, tgt, target, target_labels, terminating
    )
    assert authorize(who, pol, target, info).allowed is expected


def _consenting_policy(**targets: object) -> object:
    from keykeeper.api.models import parse_policy_spec

    return parse_policy_spec(
        {"sourceNamespaces": {"selector": {}}, "targetNamespaces": {"names": ["api"], **targets}}
    )


def _api(accepts: str | None) -> NamespaceInfo:
    from keykeeper.core.authz import accepted_sources

    annotations = {} if accepts is None else {"keykeeper.dev/accept-from": accepts}
    return NamespaceInfo("api", {}, accepts=accepted_sources(annotations))


CONSENT_CASES = [
    # (policy's targetNamespaces extras, the target's accept-from, secret name, data key,
    #  allowed, reason)
    pytest.param({}, None, "db-password", "api-key", True, Reason.AUTHORIZED, id="no-rules"),
    pytest.param(
        {}, "other", "x", "api-key", False, Reason.TARGET_NOT_CONSENTING, id="annotation-binds"
    ),
    pytest.param({}, "other, home", "x", "api-key", True, Reason.AUTHORIZED, id="listed"),
    pytest.param({}, "*", "x", "api-key", True, Reason.AUTHORIZED, id="star"),
    pytest.param({}, "", "x", "api-key", False, Reason.TARGET_NOT_CONSENTING, id="empty-accepts"),
    pytest.param(
        {}, "home/../x", "x", "api-key", False, Reason.TARGET_NOT_CONSENTING, id="garbage-entry"
    ),
    pytest.param(
        {"requireConsent": True},
        None,
        "x",
        "api-key",
        False,
        Reason.TARGET_NOT_CONSENTING,
        id="required-and-absent",
    ),
    pytest.param(
        {"requireConsent": True}, "home", "x", "api-key", True, Reason.AUTHORIZED, id="required"
    ),
    pytest.param(
        {"secretNames": ["home-*", "stripe"]},
        None,
        "db-password",
        "api-key",
        False,
        Reason.SECRET_NAME_NOT_ALLOWED,
        id="name-not-listed",
    ),
    pytest.param(
        {"secretNames": ["home-*", "stripe"]},
        None,
        "home-db",
        "api-key",
        True,
        Reason.AUTHORIZED,
        id="name-prefix",
    ),
    pytest.param(
        {"secretNames": ["stripe"]}, None, "stripe", "api-key", True, Reason.AUTHORIZED, id="exact"
    ),
    pytest.param(
        {"secretNames": ["stripe"]},
        None,
        "stripe2",
        "api-key",
        False,
        Reason.SECRET_NAME_NOT_ALLOWED,
        id="exact-is-not-prefix",
    ),
    pytest.param(
        {"dataKeys": ["api-key"]},
        None,
        "x",
        "password",
        False,
        Reason.SECRET_NAME_NOT_ALLOWED,
        id="data-key-not-listed",
    ),
    pytest.param(
        {"secretNames": ["x"]},
        "other",
        "x",
        "api-key",
        False,
        Reason.TARGET_NOT_CONSENTING,
        id="consent-before-names",
    ),
]


@pytest.mark.parametrize(
    ("extras", "accepts", "name", "data_key", "allowed", "reason"), CONSENT_CASES
)
def test_a_target_takes_only_what_it_and_the_policy_accept(  # type: ignore[no-untyped-def]
    extras, accepts, name, data_key, allowed, reason
) -> None:
    from keykeeper.core.authz import Target

    decision = authorize(
        key(), _consenting_policy(**extras), "api", _api(accepts), Target("api", name, data_key)
    )
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_the_own_namespace_needs_no_consent_and_no_listed_name() -> None:
    from keykeeper.core.authz import Target

    pol = _consenting_policy(requireConsent=True, secretNames=["s"], dataKeys=["k"])
    home = NamespaceInfo("home", {}, accepts=frozenset({"nobody"}))
    decision = authorize(key(), pol, "home", home, Target("home", "anything", "any"))
    assert decision.allowed


def test_a_selector_never_expands_into_a_namespace_that_does_not_consent() -> None:
    from keykeeper.api.models import parse_policy_spec

    pol = parse_policy_spec(
        {"sourceNamespaces": {"selector": {}}, "targetNamespaces": {"selector": {}}}
    )
    namespaces = {
        "yes": NamespaceInfo("yes", {"app": "x"}, accepts=frozenset({"home"})),
        "no": NamespaceInfo("no", {"app": "x"}, accepts=frozenset({"other"})),
        "open": NamespaceInfo("open", {"app": "x"}),
    }
    spec = apikey_spec({"namespaceSelector": {"matchLabels": {"app": "x"}}})
    planned = plan(key(), spec, "k", pol, namespaces)
    assert sorted(t.namespace for t, _ in planned) == ["open", "yes"]
