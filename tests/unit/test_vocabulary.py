"""One vocabulary: every reason keykeeper gives is a member of ``api.reasons.Reason``,
including the ones the error tree spells as strings (it sits below ``api``)."""

from __future__ import annotations

import pytest

import keykeeper.errors
from keykeeper.api.reasons import Reason, RotationCause
from keykeeper.errors import KeykeeperError


def _tree(cls: type[KeykeeperError]) -> list[type[KeykeeperError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


ERRORS = sorted(set(_tree(KeykeeperError)) - {KeykeeperError}, key=lambda c: c.__name__)


@pytest.mark.parametrize("error", ERRORS, ids=[e.__name__ for e in ERRORS])
def test_every_error_reason_is_a_reason(error: type[KeykeeperError]) -> None:
    assert error.reason in {r.value for r in Reason}, error.reason


def test_the_error_tree_is_the_one_module_it_claims() -> None:
    for error in _tree(KeykeeperError):
        if error.__module__ == "keykeeper.errors":
            assert error.__name__ in (keykeeper.errors.__doc__ or "")


def test_a_value_is_spelled_once() -> None:
    values = [r.value for r in Reason]
    assert len(values) == len(set(values))
    # a rotation cause is also the reason of RotationDue while the version is made
    assert {c.value for c in RotationCause}.isdisjoint(values)
