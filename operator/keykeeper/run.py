"""What one reconcile of one ApiKey carries from step to step: the object it started
from, the Ready condition so far, what became of each target, the Events to post, and
when to look again. Every controller of a reconcile reads and adds to it; only the
reporter writes it out."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

from keykeeper import conditions
from keykeeper.audit import AuditLog
from keykeeper.conditions import Condition
from keykeeper.errors import KeykeeperError
from keykeeper.journal import Journal
from keykeeper.kube import Body
from keykeeper.status import TargetResult
from keykeeper.world import KeyRef

SOURCE_RETRY = 30.0  # a source Secret that is missing is looked at again after this
PROVIDER_RETRY = 15.0  # a provider that failed
TARGET_RETRY = 10.0  # a target that could not be written or withdrawn


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

    def __post_init__(self, audit: AuditLog | None) -> None:
        self.journal = Journal(audit, self.ref, self.uid)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    def fail(self, exc: KeykeeperError, retry: float | None = None) -> None:
        self.ready = ready("False", exc.reason, str(exc))
        self.again(retry)

    def again(self, after: float | None) -> None:
        if after is not None:
            self.retry = after if self.retry is None else min(self.retry, after)
