"""Deleting an ApiKey, and finishing erasures: nothing of a key outlives it.

On deletion every projection is withdrawn, the store's envelopes are erased, the
per-key KEKs are destroyed under the provider recorded in the store (so a deleted
policy strands nothing), the store Secret is deleted (that exact object), and only
then is keykeeper's finalizer removed. While a KEK cannot be destroyed, the error
propagates and the work queue retries with backoff: the finalizer is held.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from keykeeper.api import labels
from keykeeper.api.issuers import UpstreamState
from keykeeper.api.reasons import EventType, Reason
from keykeeper.audit.log import AuditLog
from keykeeper.controllers.apikey.projecting import Projector
from keykeeper.controllers.apikey.run import Run
from keykeeper.controllers.apikey.versions import VersionKeeper
from keykeeper.core import store
from keykeeper.core.plan import Held
from keykeeper.errors import IssuerError, ProviderError
from keykeeper.kube.client import Kube, NotFound
from keykeeper.kube.paths import apikey_path, secret_path
from keykeeper.kube.world import World
from keykeeper.types import Body, KeyRef

log = logging.getLogger("keykeeper.finalizing")
Teller = Callable[[Run], Awaitable[None]]  # posts a run's Events (``Reporter.tell``)


async def _silent(run: Run) -> None:
    return None


class Finalizer:
    def __init__(
        self,
        kube: Kube,
        world: World,
        keeper: VersionKeeper,
        projector: Projector,
        audit: AuditLog,
        namespace: str,
    ) -> None:
        self.kube, self.world, self.keeper = kube, world, keeper
        self.projector, self.audit, self.namespace = projector, audit, namespace

    async def finish_erasure(self, run: Run, stored: store.Store) -> store.Store:
        """Destroy per-key KEKs still pending; a provider outage retries, never forgets."""
        if not stored.keks_pending:
            return stored
        try:
            return await self.keeper.destroy_pending(run.ref, stored, run.journal)
        except ProviderError as exc:
            log.warning("%s/%s: KEKs pending destruction: %s", *run.ref, exc)
            return stored

    async def _revoke_upstream(self, run: Run, stored: store.Store, tell: Teller) -> store.Store:
        """An issued key's upstream keys are revoked before it goes: the deletion waits for
        the issuer (retried with backoff, said by a Warning Event), never dropping a live
        key, unless the platform abandons them (``keykeeper.dev/abandon-upstream`` on the
        store Secret, which only the operator's namespace's admins can set; audited)."""
        try:
            return await self.keeper.settle(run.ref, stored, run.journal)
        except IssuerError as exc:
            pending = ", ".join(str(v.upstream_id) for v in stored.upstream(UpstreamState.REVOKING))
            if stored.abandoned:
                await run.journal.intend(
                    Reason.REVOKED,
                    f"upstream keys {pending} abandoned by the platform's override "
                    f"({store.ABANDON}); they may still be live at the issuer",
                )
                return stored
            run.journal.tell(
                EventType.WARNING,
                exc.reason,
                f"deletion waits for the issuer to revoke upstream keys {pending}: {exc}",
            )
            await tell(run)
            raise

    async def finalize(
        self, ref: KeyRef, body: Body, held: list[Held], tell: Teller | None = None
    ) -> None:
        run = Run(ref, body, audit=self.audit)
        await self.projector.withdraw(run, held)
        stored = await self.keeper.read(run.uid)
        if stored.resource_version is not None:
            if (body.get("spec") or {}).get("revoked") is True and stored.revoked_at is None:
                # revoked and deleted at once: its values are dead all the same
                await self.keeper.sources.revocations.record(
                    v.tombstone for v in stored.versions if v.tombstone
                )
            if stored.erased_at is None:
                stored = await self.keeper.erase(ref, stored, run.journal)
            stored = await self._revoke_upstream(run, stored, tell or _silent)
            stored = await self.keeper.destroy_pending(ref, stored, run.journal)
            await run.journal.intend(Reason.ERASED, "store destroyed on deletion")
            await self.kube.delete(
                secret_path(self.namespace, store.store_name(run.uid)), uid=stored.secret_uid
            )
        finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != labels.FINALIZER]
        with contextlib.suppress(NotFound):
            await self.kube.patch(
                apikey_path(*ref),
                {
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": body["metadata"]["resourceVersion"],
                    }
                },
            )
        self.world.drop_key(ref)
