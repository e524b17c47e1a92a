"""The audit record of an action on a key, written before the action is taken."""

from __future__ import annotations

from keykeeper import store
from keykeeper.audit import AuditLog
from keykeeper.world import KeyRef


def record(
    audit: AuditLog, action: str, ref: KeyRef, uid: str, version: store.Version | None, detail: str
) -> None:
    """One audit record about a key, with the version's KEK and fingerprint when there is one."""
    audit.append(
        action,
        namespace=ref[0],
        name=ref[1],
        uid=uid,
        version=version.version if version else None,
        kms_key_id=version.kms_key_id if version else "",
        fingerprint=version.fingerprint if version else "",
        detail=detail,
    )
