"""Cryptographic erasure and the integrity stop, applied to a key's store (the two
steps of erasure: envelopes destroyed now, per-key KEKs destroyed once the provider
confirms; every live upstream key of an issued key marked for revocation with them)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from keykeeper.api.provider_options import Capability, ProviderId
from keykeeper.api.reasons import EventType, Reason
from keykeeper.api.timestamps import rfc3339_milli
from keykeeper.audit.journal import Journal
from keykeeper.controllers.apikey.issuing import revoking_all
from keykeeper.core import store
from keykeeper.providers.threads import offload
from keykeeper.types import KeyRef

if TYPE_CHECKING:
    from keykeeper.controllers.apikey.versions import VersionKeeper


async def erase(
    keeper: VersionKeeper, ref: KeyRef, stored: store.Store, journal: Journal
) -> store.Store:
    """Cryptographic erasure, step one: every envelope destroyed, and the KEKs the
    versions name listed as pending (no provider is needed for this step)."""
    keks = tuple(sorted({v.kms_key_id for v in stored.versions if v.provider != ProviderId.LOCAL}))
    await journal.intend(Reason.ERASED, "erasing all envelopes")
    stored = await keeper.write(
        ref, revoking_all(stored.erased(rfc3339_milli(keeper.clock()), keks))
    )
    detail = "all envelopes destroyed" + (
        f"; KEKs pending destruction: {', '.join(keks)}" if keks else ""
    )
    journal.tell(EventType.NORMAL, Reason.ERASED, detail)
    return stored


async def destroy_pending(
    keeper: VersionKeeper, ref: KeyRef, stored: store.Store, journal: Journal
) -> store.Store:
    """Erasure, step two: destroy the pending per-key KEKs under the provider that made
    them (from the store, so a deleted policy does not strand them). Raises a
    ``ProviderError`` while the provider cannot confirm; the list shrinks only on success."""
    if not stored.keks_pending or stored.kms is None:
        return stored
    provider = await keeper.providers.provider_for(stored.kms, keeper.namespace)
    done: list[str] = []
    for kek in stored.keks_pending:
        if Capability.KEK_DESTRUCTION in provider.capabilities:  # declared, not inferred
            await journal.intend(Reason.ERASED, f"destroying KEK {kek}")
            await offload(provider.executor, provider.destroy_kek, kek)
        done.append(kek)
    left = tuple(k for k in stored.keks_pending if k not in done)
    return await keeper.write(ref, replace(stored, keks_pending=left))


async def record_integrity_failure(
    keeper: VersionKeeper, ref: KeyRef, stored: store.Store, problem: str, journal: Journal
) -> store.Store:
    await journal.intend(Reason.INTEGRITY_FAILURE, problem[:200], stored.current)
    stored = await keeper.write(
        ref, replace(stored, integrity_failed_at=rfc3339_milli(keeper.clock()))
    )
    journal.tell(
        EventType.WARNING,
        Reason.SUSPENDED,
        "suspended automatically: a stored version failed to authenticate",
    )
    return stored
