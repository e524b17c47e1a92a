"""Policy value patterns: RE2, so a tenant's value cannot make a pattern stall the operator.

RE2 runs in time linear in the input (no backtracking), so a pattern like
``^([A-Za-z0-9]+_?)+$`` cannot be made to take seconds on a crafted value; patterns RE2
cannot run (back-references, look-arounds) are refused when the policy is read.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported once, as a spec error


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; ``ValueError`` saying why when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise ValueError(f"not a valid RE2 regular expression: {exc}") from None
