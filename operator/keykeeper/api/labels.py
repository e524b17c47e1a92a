"""Label and annotation names keykeeper writes (DESIGN.md §1)."""

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
