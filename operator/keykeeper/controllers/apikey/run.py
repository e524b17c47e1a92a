"""What one reconcile of one ApiKey carries from step to step: the object it started
from, the Ready condition so far, what became of each target, the Events to post, and
when to look again. Every controller of a reconcile reads and adds to it; only the
reporter writes it out."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field

from keykeeper.api import conditions
from keykeeper.api.conditions import Condition
from keykeeper.audit.journal import Journal
from keykeeper.audit.log import AuditLog
from keykeeper.core.status import TargetResult
from keykeeper.errors import KeykeeperError, ProviderError
from keykeeper.types import Body, KeyRef

SOURCE_RETRY = 30.0  # a source Secret that is missing is looked at again after this
PROVIDER_RETRY = 2.0  # a provider that failed: the first retry, then doubling ...
PROVIDER_RETRY_CAP = 15.0  # ... up to this, so a key is back within ~19 s of the KMS
TARGET_RETRY = 10.0  # a target that could not be written or withdrawn
TEMPLATE_RETRY = 300.0  # a template that does not render (a spec or policy change comes sooner)
AUDIT_RETRY = 10.0  # an action whose audit record could not be written (the volume's state)


def provider_backoff(failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retrying a key whose provider failed ``failures`` times in a row:
    exponential, capped, with +/-25% jitter so a thousand keys do not retry in step."""
    base = min(PROVIDER_RETRY * 2 ** max(failures - 1, 0), PROVIDER_RETRY_CAP)
    return float(base * (0.75 + 0.5 * rand()))


def ready(status: conditions.Status, reason: str, message: str) -> Condition:
    return Condition(conditions.READY, status, reason, message)


@dataclass
class Run:
    ref: KeyRef
    body: Body
    ready: Condition = field(
        default_factory=lambda: ready("True", "Ready", "the key is stored and reconciled")
    )
    results: list[TargetResult] = field(default_factory=list)
    journal: Journal = field(init=False)
    audit: InitVar[AuditLog | None] = None
    retry: float | None = None
    provider_failed: bool = False  # the reconciler turns this into a jittered backoff
    # this run added the finalizer to a key with no status: no store can exist yet, so it
    # is not read (a store that exists after all makes its create conflict: retried)
    new_key: bool = False
    # projected Secrets this run moved to a new version: (namespace, name, version)
    rotated: list[tuple[str, str, int]] = field(default_factory=list)
    # conditions beside Ready and Projected that this run found (Expiring, Expired)
    extra: list[Condition] = field(default_factory=list)
    value_expires_at: str | None = None  # RFC 3339: when the current value expires
    # withdrawn Secrets another finalizer keeps (deleted, emptied, not gone yet)
    withdrawing: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self, audit: AuditLog | None) -> None:
        self.journal = Journal(audit, self.ref, self.uid)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def fail(self, exc: KeykeeperError, retry: float | None = None) -> None:
        self.ready = ready("False", exc.reason, str(exc))
        self.again(retry)
        if isinstance(exc, ProviderError):
            self.provider_trouble()

    def provider_trouble(self) -> None:
        """A provider call failed: retry with backoff (see ``provider_backoff``)."""
        self.provider_failed = True

    def again(self, after: float | None) -> None:
        if after is not None:
            self.retry = after if self.retry is None else min(self.retry, after)
