"""Tables for the small pure modules: durations, selectors, conditions, values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from keykeeper.api import conditions
from keykeeper.api.conditions import Condition
from keykeeper.api.durations import format_duration, parse_duration
from keykeeper.api.models import GenerateSource, Generator, LabelSelector, ValueConstraints
from keykeeper.core.selectors import matches
from keykeeper.core.values import check, generate
from keykeeper.errors import InvalidValue


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90d", timedelta(days=90)),
        ("2160h", timedelta(hours=2160)),
        ("1h30m", timedelta(minutes=90)),
        ("2w", timedelta(days=14)),
        ("1d12h", timedelta(hours=36)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "90", "90 days", "1.5h", "30m1h", "0s", "-1d", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}, False),
    ],
)
def test_selectors(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert matches(LabelSelector.model_validate(selector), labels) is expected


T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def test_conditions_keep_transition_time_while_status_holds() -> None:
    first = conditions.merge([], [Condition("Ready", "False", "PolicyNotFound", "m")], 1, T0)
    same = conditions.merge(first, [Condition("Ready", "False", "InvalidValue", "other")], 2, T1)
    flipped = conditions.merge(same, [Condition("Ready", "True", "Ready", "ok")], 3, T1)
    assert first[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["reason"] == "InvalidValue"
    assert same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T01:00:00Z"


@pytest.mark.parametrize(
    ("generator", "override", "pattern"),
    [
        (Generator(), None, r"[A-Za-z0-9]{40}"),
        (Generator(length=16, prefix="kk_", alphabet="hex"), None, r"kk_[0-9a-f]{16}"),
        (
            Generator(prefix="kk_", length=16, alphabet="lowercase"),
            GenerateSource(prefix="", length=20, alphabet="base62"),
            r"[A-Za-z0-9]{20}",
        ),
        (Generator(), GenerateSource(alphabet="base64url"), r"[A-Za-z0-9_-]{40}"),
    ],
)
def test_generate(generator: Generator, override: GenerateSource | None, pattern: str) -> None:
    values = {generate(generator, override) for _ in range(20)}
    assert len(values) == 20
    assert all(re.fullmatch(pattern.encode(), v) for v in values)


@pytest.mark.parametrize(
    ("override", "why"),
    [
        pytest.param(GenerateSource(length=16), "length 16 is below", id="shorter"),
        pytest.param(GenerateSource(alphabet="hex"), "hex has fewer bits", id="weaker-alphabet"),
        pytest.param(
            GenerateSource(length=16, alphabet="hex"), "below", id="64-bits-under-a-238-bit-policy"
        ),
        pytest.param(GenerateSource(alphabet="lowercase"), "fewer bits", id="lowercase"),
    ],
)
def test_a_tenants_override_never_weakens_the_policys_generator(
    override: GenerateSource, why: str
) -> None:
    """Finding K16: ``source.generate`` is the tenant's, the generator the platform
    team's; 16 hex characters (64 bits) under a 40-character base62 policy is refused."""
    with pytest.raises(InvalidValue, match=why):
        generate(Generator(), override)


@pytest.mark.parametrize(
    ("value", "constraints", "why"),
    [
        (b"", ValueConstraints(), "empty"),
        (b"short", ValueConstraints(min_length=10), "at least 10"),
        (b"x" * 11, ValueConstraints(max_length=10), "at most 10"),
        (b"pk_live_abc", ValueConstraints(pattern="^sk_.*$"), "does not match"),
        (b"\xff\xfe", ValueConstraints(pattern=".*"), "not UTF-8"),
    ],
)
def test_value_constraints(value: bytes, constraints: ValueConstraints, why: str) -> None:
    with pytest.raises(InvalidValue, match=why) as info:
        check(value, constraints)
    if len(value) > 3:
        assert value.decode(errors="ignore") not in str(info.value)


def test_a_fitting_value_passes() -> None:
    check(
        b"sk_live_" + b"a" * 24,
        ValueConstraints(min_length=20, pattern="^sk_(live|test)_[a-z]{24,}$"),
    )
