"""The checked string fields of the API's models: durations, Kubernetes names, data keys
and RE2 patterns, each refused with ``ValueError`` (pydantic's) when it is not one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

from keykeeper.api import names
from keykeeper.api.durations import parse_duration
from keykeeper.api.patterns import compile_pattern
from keykeeper.errors import InvalidName


def _duration(text: str) -> str:
    parse_duration(text)
    return text


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """A names check as a pydantic validator (which wants ValueError)."""

    def validate(text: str) -> str:
        try:
            return check(text)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    return validate


def optional_namespace(text: str) -> str:
    return _checked(names.namespace)(text) if text else text


def _regex(text: str) -> str:
    compile_pattern(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]
NamespaceName = Annotated[str, AfterValidator(_checked(names.namespace))]
ObjectName = Annotated[str, AfterValidator(_checked(names.object_name))]
DataKey = Annotated[str, AfterValidator(_checked(names.data_key))]
Regex = Annotated[str, AfterValidator(_regex)]
