"""The journal of one reconcile of one key: what it tells, in both of the audit trail's
forms, from one object.

An action is journalled twice, at two moments: its audit record is written *before*
the action is taken (``intend``: the chained log says what was attempted, even if
the operator dies half-way), and its Event is posted *after* the status write
(``tell``: users see what happened, not what was tried). Narration of a status change
(``narrate``) is both at once. The reporter posts ``told`` when the reconcile ends;
nothing else holds a list of Events.

What is told is posted as **one Event per type per reconcile** (``summarize``): its
reason is the first action told, its message every action as ``Reason: what``, the
actions joined by `` | ``. A new key with three targets is one Event, not five; the
audit log keeps one record per action per reconcile, naming every target it is taken
for (a key with 64 targets is one ``Projected`` record, not 64: K9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from keykeeper.audit.log import AuditLog
from keykeeper.core import store
from keykeeper.core.narration import Entry
from keykeeper.errors import AuditWriteError
from keykeeper.types import KeyRef


@dataclass(frozen=True)
class Told:
    """An Event to post: its type, reason and message."""

    type: str
    reason: str
    message: str


@dataclass
class Journal:
    audit: AuditLog | None  # None: a journal that only tells (a key already gone)
    ref: KeyRef
    uid: str
    told: list[Told] = field(default_factory=list)

    async def intend(
        self,
        action: str,
        detail: str,
        version: store.Version | None = None,
        *,
        proceeds: bool = False,
    ) -> None:
        """The audit record of an action about to be taken, with the version's KEK and
        fingerprint when there is one, on disk when this returns (one sync serves the
        records of every reconcile waiting: ``groupsync``). Raises ``AuditWriteError``:
        no record, no action; except when the action ``proceeds`` whatever the disk says
        (a withdrawal: a full audit volume must not keep a revoked value served, K9; a
        status already written), which is named in an ``AuditGap`` record once the log
        is written again."""
        if self.audit is None:
            return
        try:
            record = self.audit.append(
                action,
                namespace=self.ref[0],
                name=self.ref[1],
                uid=self.uid,
                version=version.version if version else None,
                kms_key_id=version.kms_key_id if version else "",
                fingerprint=version.fingerprint if version else "",
                detail=detail,
                sync=False,
            )
            await self.audit.durable.durable(int(record["seq"]))
        except AuditWriteError:
            if not proceeds:
                raise
            namespace, name = self.ref
            self.audit.remember(action, namespace=namespace, name=name, uid=self.uid, detail=detail)

    def tell(self, type_: str, reason: str, message: str) -> None:
        """An Event about what was done, posted after the status write."""
        self.told.append(Told(type_, reason, message))

    async def narrate(self, entry: Entry) -> None:
        """A status change worth telling: its audit record (if any) and its Event. The
        status is written already, so a record that cannot be written is remembered (as a
        withdrawal's is) and the Event still posted: the change it tells cannot wait."""
        if entry.audit is not None:
            await self.intend(entry.reason, entry.audit, proceeds=True)
        self.tell(entry.type, entry.reason, entry.message)


SEPARATOR = " | "  # between the actions of one summarized Event


def summarize(told: Sequence[Told]) -> list[Told]:
    """One Event per type (Normal, Warning), in the order told: the first action's reason,
    and each reason's messages under it (``Created: ... | Projected: a; b``)."""
    by_type: dict[str, dict[str, list[str]]] = {}
    for item in told:
        by_type.setdefault(item.type, {}).setdefault(item.reason, []).append(item.message)
    return [
        Told(
            type_,
            next(iter(reasons)),
            SEPARATOR.join(f"{reason}: {'; '.join(texts)}" for reason, texts in reasons.items()),
        )
        for type_, reasons in by_type.items()
    ]
