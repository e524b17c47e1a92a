"""Reporting one reconcile: one status write, then the Events and audit records.

The status is composed by ``status.compose`` (pure) and written only when it differs
from the one the ApiKey has; what to tell about the change comes from
``narration.narrate`` (pure). The Events of the actions taken (Created, Projected, ...)
are in the run's journal; their audit records were written before each action.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from keykeeper.api import conditions
from keykeeper.api.models import API_VERSION, Phase
from keykeeper.api.timestamps import rfc3339
from keykeeper.audit.events import EventSink
from keykeeper.audit.journal import summarize
from keykeeper.controllers.apikey.run import Run
from keykeeper.core import lifecycle, store
from keykeeper.core.narration import narrate
from keykeeper.core.status import compose, mark_withdrawn
from keykeeper.kube.client import Conflict, Kube
from keykeeper.kube.paths import apikey_path
from keykeeper.kube.world import World
from keykeeper.types import Body

log = logging.getLogger("keykeeper.reporting")

STALE_RETRY = 0.5  # a status refused as stale: the key again, read from the API


class Reporter:
    def __init__(
        self,
        kube: Kube,
        world: World,
        sink: EventSink,
        clock: Callable[[], datetime],
        shown: Callable[[str, str], str] = lambda uid, fingerprint: fingerprint,
    ) -> None:
        self.kube, self.world, self.sink, self.clock = kube, world, sink, clock
        self.shown = shown  # (key uid, fingerprint) -> the key's own (``Keyring.shown``)

    async def report(self, run: Run, stored: store.Store, life: lifecycle.Decision | None) -> None:
        old = self.world.status_of(run.ref, run.body)
        by_type = {c.type: c for c in (life.conditions if life else ())}
        if run.ready.status == "True" and conditions.READY in by_type:
            run.ready = by_type[conditions.READY]  # Suspended, Revoked, Erased, IntegrityFailure
        run.results = mark_withdrawn(run.results, old.get("projections") or [], run.withdrawing)
        next_at = life.next_rotation_at if life else None
        status = compose(
            old,
            phase=life.phase if life else Phase(old.get("phase") or Phase.GENERATED),
            versions=[
                dataclasses.replace(v, fingerprint=self.shown(run.uid, v.fingerprint))
                for v in stored.versions
            ],
            current=stored.current.version if stored.current else None,
            next_rotation_at=rfc3339(next_at) if next_at else None,
            value_expires_at=run.value_expires_at,
            ready=run.ready,
            extra=[
                *([by_type[conditions.ROTATION_DUE]] if conditions.ROTATION_DUE in by_type else []),
                *run.extra,
            ],
            results=run.results,
            generation=run.body["metadata"].get("generation", 0),
            now=self.clock(),
        )
        if status == old or await self._write(run, old, status):  # a stale one: told next time
            for entry in narrate(old, status, run.ready, run.results):
                await run.journal.narrate(entry)
        await self.tell(run)

    async def _write(self, run: Run, old: Body, status: Body) -> bool:
        """Write the status at the resourceVersion this reconcile knows (K12): a key that
        changed since, or whose status another writer (a replica that leads now) wrote,
        refuses it as stale, and the key is looked at again from what the API holds."""
        patch = {**{k: None for k in old if k not in status}, **status}
        rv = self.world.resource_version(run.ref, run.body)
        try:
            written = await self.kube.patch(
                apikey_path(*run.ref, status=True),
                {"metadata": {"resourceVersion": rv}, "status": patch},
            )
        except Conflict:
            log.info("%s/%s: the key changed since it was read; its status waits", *run.ref)
            self.world.forget_written_status(run.ref)
            run.again(STALE_RETRY)
            return False
        self.world.wrote_status(run.ref, written)
        return True

    async def tell(self, run: Run) -> None:
        """The Events of what the run did (its audit records were written before)."""
        for told in summarize(run.journal.told):
            log.info("%s/%s: %s", run.ref[0], run.ref[1], told.message)  # Reason: what | ...
            await self.sink.emit(_ref_body(run.body), told.type, told.reason, told.message)


def _ref_body(body: Body) -> Body:
    return {"apiVersion": API_VERSION, "kind": "ApiKey", "metadata": body["metadata"]}
