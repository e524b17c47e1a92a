"""Kubernetes label selectors (matchLabels + matchExpressions), evaluated in memory."""

from __future__ import annotations

from collections.abc import Mapping

from keykeeper.api.models import LabelSelector


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy every requirement; the empty selector matches all."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions:
        present = expr.key in labels
        if expr.operator == "In" and not (present and labels[expr.key] in expr.values):
            return False
        if expr.operator == "NotIn" and present and labels[expr.key] in expr.values:
            return False
        if expr.operator == "Exists" and not present:
            return False
        if expr.operator == "DoesNotExist" and present:
            return False
    return True
