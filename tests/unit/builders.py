"""Builders for table tests: ``policy(targets=["a"])``, ``key("payments")``, ``ns("a", team="x")``."""

from __future__ import annotations

from typing import Any

from keykeeper.api.models import (
    ApiKeySpec,
    KeyPolicySpec,
    Phase,
    parse_apikey_spec,
    parse_policy_spec,
)
from keykeeper.core.authz import KeyContext, NamespaceInfo


def ns(name: str, terminating: bool = False, **labels: str) -> NamespaceInfo:
    return NamespaceInfo(name, labels, terminating)


def policy(
    *,
    sources: Any = None,
    targets: Any = None,
    own: bool | None = None,
    target_selector: dict[str, str] | None = None,
    **spec: Any,
) -> KeyPolicySpec:
    body: dict[str, Any] = {
        "sourceNamespaces": sources if sources is not None else {"selector": {}}
    }
    if targets is not None or own is not None or target_selector is not None:
        body["targetNamespaces"] = {"names": list(targets or [])}
        if own is not None:
            body["targetNamespaces"]["allowOwnNamespace"] = own
        if target_selector is not None:
            body["targetNamespaces"]["selector"] = {"matchLabels": target_selector}
    body.update(spec)
    return parse_policy_spec(body)


def key(namespace: str = "home", phase: Phase = Phase.ACTIVE, **labels: str) -> KeyContext:
    return KeyContext(NamespaceInfo(namespace, labels), phase)


def apikey_spec(*projections: dict[str, Any], **spec: Any) -> ApiKeySpec:
    return parse_apikey_spec(
        {"policy": "p", "source": {"generate": {}}, "projections": list(projections), **spec}
    )
