"""The targets index (K4) answers what the full scan of every key answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keykeeper.api.models import LabelSelector, Requirement
from keykeeper.core.authz import NamespaceInfo
from keykeeper.core.selectors import matches
from keykeeper.kube.targets_index import TargetsIndex, anchors
from keykeeper.types import KeyRef

LABEL = st.sampled_from(["team", "tier", "env"])
VALUE = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(LABEL, VALUE, max_size=3)
NAMESPACE = st.sampled_from(["n1", "n2", "n3"])

REQUIREMENT = st.one_of(
    st.builds(
        Requirement,
        key=LABEL,
        operator=st.sampled_from(["In", "NotIn"]),
        values=st.lists(VALUE, min_size=1, max_size=3).map(tuple),
    ),
    st.builds(Requirement, key=LABEL, operator=st.sampled_from(["Exists", "DoesNotExist"])),
)
SELECTOR = st.builds(
    LabelSelector,
    match_labels=st.dictionaries(LABEL, VALUE, max_size=2),
    match_expressions=st.lists(REQUIREMENT, max_size=3).map(tuple),
)
KEY = st.tuples(NAMESPACE, st.lists(NAMESPACE, max_size=2), st.lists(SELECTOR, max_size=3))
STATE = st.none() | st.builds(
    NamespaceInfo, name=st.just("n1"), labels=LABELS, terminating=st.booleans()
)


def scan(
    keys: dict[KeyRef, tuple[list[str], list[LabelSelector]]],
    name: str,
    before: NamespaceInfo | None,
    after: NamespaceInfo | None,
) -> set[KeyRef]:
    """The full scan the index replaces: every key, every selector."""
    live = [i.labels for i in (before, after) if i is not None and not i.terminating]
    return {
        ref
        for ref, (named, selectors) in keys.items()
        if ref[0] == name
        or name in named
        or any(matches(s, labels) for s in selectors for labels in live)
    }


@settings(max_examples=400, deadline=None)
@given(keys=st.lists(KEY, max_size=8), before=STATE, after=STATE, dropped=st.integers(0, 8))
def test_the_index_finds_exactly_what_a_scan_finds(keys, before, after, dropped) -> None:  # type: ignore[no-untyped-def]
    index = TargetsIndex()
    known: dict[KeyRef, tuple[list[str], list[LabelSelector]]] = {}
    for n, (namespace, named, selectors) in enumerate(keys):
        ref = (namespace, f"k{n}")
        index.put(ref, named, tuple(selectors))
        known[ref] = (named, selectors)
        if n == dropped:  # a key re-put with nothing, then dropped, leaves nothing behind
            index.put(ref, [], ())
            index.drop(ref)
            del known[ref]
    assert index.affected("n1", before, after) == scan(known, "n1", before, after)


def test_a_selector_is_indexed_under_one_positive_requirement() -> None:
    exact = LabelSelector(match_labels={"team": "a"})
    listed = LabelSelector(
        match_expressions=(Requirement(key="tier", operator="In", values=("x", "y")),)
    )
    exists = LabelSelector(match_expressions=(Requirement(key="env", operator="Exists"),))
    negative = LabelSelector(
        match_expressions=(Requirement(key="env", operator="NotIn", values=("p",)),)
    )
    assert anchors(exact) == (("team", "a"),)
    assert anchors(listed) == (("tier", "x"), ("tier", "y"))
    assert anchors(exists) == (("env", None),)
    assert anchors(negative) == () and anchors(LabelSelector()) == ()


def test_a_namespace_event_evaluates_only_selectors_that_can_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000 keys selecting other teams' namespaces: a new namespace of team z looks at
    none of them (the scan evaluated all 10,000)."""
    index = TargetsIndex()
    for n in range(10_000):
        selector = LabelSelector(match_labels={"team": f"t{n}"})
        index.put(("home", f"k{n}"), [], (selector,))
    evaluated = 0
    real = matches

    def counting(selector: LabelSelector, labels: object) -> bool:
        nonlocal evaluated
        evaluated += 1
        return real(selector, labels)  # type: ignore[arg-type]

    monkeypatch.setattr("keykeeper.kube.targets_index.matches", counting)
    found = index.affected("new", None, NamespaceInfo("new", {"team": "z"}))
    assert found == set() and evaluated == 0
    found = index.affected("new", None, NamespaceInfo("new", {"team": "t7"}))
    assert found == {("home", "k7")} and evaluated == 1
