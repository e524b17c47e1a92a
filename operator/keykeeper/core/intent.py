"""What an ApiKey's spec and its policy ask of the lifecycle, as ``lifecycle`` types."""

from __future__ import annotations

import logging

from keykeeper.api import labels, timestamps
from keykeeper.api.models import ApiKeySpec, KeyPolicySpec
from keykeeper.core import lifecycle
from keykeeper.types import Body

log = logging.getLogger("keykeeper.intent")


def intent_of(body: Body, spec: ApiKeySpec) -> lifecycle.Intent:
    requested = (body["metadata"].get("annotations") or {}).get(labels.ROTATE_REQUESTED_AT)
    at = None
    if requested:
        try:
            at = timestamps.parse(requested)
        except ValueError:
            log.warning(
                "%s/%s: ignoring unreadable %s",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                labels.ROTATE_REQUESTED_AT,
            )
    return lifecycle.Intent(
        suspended=spec.suspended,
        revoked=spec.revoked,
        rotate_requested_at=at,
        user_supplied=spec.source.generate is None and spec.source.issue is None,
        source_polled=spec.source.secret_ref is not None,
    )


def reuse_allowed(body: Body) -> bool:
    """The key's author allows it to take back a value it had before (a rollback)."""
    return (body["metadata"].get("annotations") or {}).get(labels.REUSE_ALLOWED) == "true"


def rules_of(policy: KeyPolicySpec) -> lifecycle.Rules:
    return lifecycle.Rules(
        period=policy.rotation.period_delta,
        grace=policy.rotation.grace_delta,
        min_interval=policy.rotation.min_interval_delta,
        strategy=policy.rotation.strategy,
        revoked_for=policy.retention.revoked_delta,
        window=policy.rotation.window.window() if policy.rotation.window else None,
    )
