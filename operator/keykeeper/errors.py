"""The one error tree of keykeeper.

Every error keykeeper raises on purpose derives from :class:`KeykeeperError`.
Whether an error is expected to pass is a property of its class (``transient``). The
reconciler turns what a user can fix into a condition and a Warning Event; a reconcile
that still fails is retried by the work queue with backoff (a transient error logged
at INFO, any other at WARNING). No kopf error is raised: the kopf handlers only queue
work, so kopf never retries a reconcile itself::

    KeykeeperError
    ├── ApiError                      the Kubernetes API answered with an error
    │   ├── NotFound                  404
    │   ├── Conflict                  409: AlreadyExists, or a resourceVersion/uid precondition
    │   ├── Forbidden                 401/403: RBAC or the admission policy refused
    │   └── ApiUnavailable            transient: 429, 5xx, no connection
    ├── ProviderError                 a key provider (KMS/HSM) failed
    │   ├── ProviderUnavailable       transient: network, throttling, token busy
    │   ├── KeyDisabled               the KEK (or its version) is disabled or destroyed
    │   └── InvalidProviderConfig     the provider is misconfigured (or its extra is missing)
    ├── IssuerError                   the service that issues a key (a webhook, AWS IAM) failed
    │   ├── IssuerUnavailable         transient: timeout, 429 (Retry-After), 5xx, no connection
    │   └── IssuerRefused             the issuer refused as configured (4xx): fix the policy
    ├── IntegrityError                a ciphertext or envelope failed to authenticate or parse
    ├── AuditWriteError               transient: an audit record could not be written: no action
    ├── NotLeading                    transient: not (or no longer surely) the Lease holder
    ├── NotStarted                    an event arrived before the operator's parts were built
    ├── SourceMissing                 transient: the secretRef Secret (or its key) is not there yet
    ├── WeakPassphrase                a passphrase too weak to protect a master key
    └── SpecError                     a custom resource is semantically invalid
        ├── InvalidName               a name from a spec is not a Kubernetes object name
        ├── InvalidValue              a supplied value breaks the policy or cannot be opened
        │   └── RevokedValue          a supplied value is one that was revoked
        ├── TemplateError             a projection template does not parse, render or fit its type
        └── ImportNotPermitted        the secretRef Secret does not consent to the import

Messages never carry a key value, a data key or a passphrase: they name the
resource, the provider and the KEK id, and say what went wrong.
"""

from __future__ import annotations


class KeykeeperError(Exception):
    """Base of every error keykeeper raises on purpose."""

    transient: bool = False
    reason: str = "Error"


class ProviderError(KeykeeperError):
    """A key provider could not wrap or unwrap a data key."""

    reason = "ProviderError"


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or refused for now; retrying may succeed."""

    transient = True
    reason = "ProviderUnavailable"


class KeyDisabled(ProviderError):
    """The key-encryption key, or the version asked for, is disabled or destroyed."""

    reason = "KeyDisabled"


class InvalidProviderConfig(ProviderError):
    """The provider's configuration is wrong, or its optional dependency is missing."""

    reason = "InvalidProviderConfig"


class IntegrityError(KeykeeperError):
    """A ciphertext, wrapped key or envelope is malformed or failed to authenticate."""

    reason = "IntegrityFailure"


class WeakPassphrase(KeykeeperError):
    """A passphrase offered for the local master key is too weak."""

    reason = "WeakPassphrase"


class SpecError(KeykeeperError):
    """A custom resource is valid by schema but cannot be acted on as written."""

    reason = "InvalidSpec"


class InvalidValue(SpecError):
    """A user-supplied value (sealed or imported) breaks the policy or cannot be read."""

    reason = "InvalidValue"


class RevokedValue(InvalidValue):
    """A user-supplied value is one that was revoked (``keys.revocations``)."""

    reason = "RevokedValue"


class InvalidName(SpecError):
    """A name taken from a spec is not a valid Kubernetes name; it never reaches a path."""

    reason = "InvalidName"


class ApiError(KeykeeperError):
    """The Kubernetes API refused or failed a request."""

    reason = "ApiError"


class NotFound(ApiError):
    reason = "NotFound"


class Conflict(ApiError):
    """AlreadyExists, or a resourceVersion or uid precondition that no longer holds."""

    reason = "Conflict"


class Forbidden(ApiError):
    reason = "Forbidden"


class ApiUnavailable(ApiError):
    transient = True
    reason = "ApiUnavailable"


class NotLeading(KeykeeperError):
    """A write refused because this replica's leadership is not current: it never held
    the Lease, or its last renewal is older than the renew deadline (a paused process
    resuming). Nothing is written until a renewal succeeds; the process then ends."""

    transient = True
    reason = "NotLeading"


class AuditWriteError(KeykeeperError):
    """A record could not be written whole and durable; the action it announces is not taken
    (the key says ``Ready=False AuditUnavailable`` and is looked at again soon)."""

    transient = True
    reason = "AuditUnavailable"


class SourceMissing(KeykeeperError):
    """The Secret a ``secretRef`` names, or its key, does not exist (yet)."""

    reason = "SourceNotFound"


class ImportNotPermitted(SpecError):
    """The Secret named by ``secretRef`` has not consented to being imported by this key."""

    reason = "ImportNotPermitted"


class NotStarted(KeykeeperError):
    """A handler ran before ``Runtime.start`` built the parts (kopf runs start first)."""

    reason = "NotStarted"


class TemplateError(SpecError):
    """A projection template does not parse, does not render for this key, or its output
    does not fit the Secret type. The message names the data key and the problem, never
    a value or a rendered fragment."""

    reason = "TemplateInvalid"


class IssuerError(KeykeeperError):
    """The service that issues a key upstream failed. Messages name the issuer, the call
    and the upstream id, never a value, a token or the issuer's response body."""

    reason = "IssuerError"


class IssuerUnavailable(IssuerError):
    """The issuer timed out, rate-limited (``retry_after`` seconds, from Retry-After) or
    failed on its side (5xx); the call is tried again with the same idempotency key."""

    transient = True
    reason = "IssuerUnavailable"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IssuerRefused(IssuerError):
    """The issuer refused the call as configured (a 4xx other than 404, 409 and 429, or an
    answer that breaks the contract): the policy's issuer needs fixing."""

    reason = "IssuerRefused"
