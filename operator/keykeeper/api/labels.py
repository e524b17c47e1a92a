"""Label and annotation names keykeeper writes (DESIGN.md §1), and the shape of a label
key and value as the apiserver checks them."""

import re
from collections.abc import Mapping
from typing import Any

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"(?:[a-z0-9](?:[a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_NAME}")
_LABEL_VALUE = re.compile(rf"(?:{_NAME})?")

MANAGED_BY = "app.kubernetes.io/managed-by"
KEYKEEPER = "keykeeper"
ROLE = "keykeeper.dev/role"
ROLE_STORE = "store"
ROLE_PROJECTION = "projection"
APIKEY_NAMESPACE = "keykeeper.dev/apikey-namespace"
APIKEY_NAME = "keykeeper.dev/apikey-name"
APIKEY_UID = "keykeeper.dev/apikey-uid"
VERSION = "keykeeper.dev/version"
FINGERPRINT = "keykeeper.dev/fingerprint"
PREVIOUS_FINGERPRINT = "keykeeper.dev/previous-fingerprint"
SHAPE = "keykeeper.dev/shape"  # a shaped Secret's template or fields (name@digest)
DATA_PROOF = "keykeeper.dev/data-proof"  # a keyed digest over a shaped Secret's data
OWNER_PROOF = "keykeeper.dev/owner-proof"
IMPORTABLE_BY = "keykeeper.dev/importable-by"
EXPIRES_AT = "keykeeper.dev/expires-at"  # on a source Secret: when its value expires (RFC 3339)
# on a Namespace: the source namespaces (comma-separated, or "*") whose keys it accepts
ACCEPT_FROM = "keykeeper.dev/accept-from"
ROTATE_REQUESTED_AT = "keykeeper.dev/rotate-requested-at"
FINALIZER = "keykeeper.dev/cleanup"
MANAGED_SELECTOR = f"{MANAGED_BY}={KEYKEEPER}"
# on an ApiKey: "true" lets it take back a value it had before (a deliberate rollback)
REUSE_ALLOWED = "keykeeper.dev/allow-value-reuse"
ROLE_REVOCATIONS = "revocations"


def is_label_key(text: str) -> bool:
    return bool(_LABEL_KEY.fullmatch(text))


def label_value(labels: Mapping[str, Any] | None, key: str) -> str:
    """The value of ``key`` among ``labels``, or "" if absent or not a label value (what
    the apiserver admits: at most 63 characters of a closed alphabet)."""
    value = (labels or {}).get(key, "")
    return value if isinstance(value, str) and _LABEL_VALUE.fullmatch(value) else ""
