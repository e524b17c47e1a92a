"""Re-wrapping: a key's live versions moved under the KMS key its policy names now.

When a policy names another KMS key (or provider), every live envelope is opened under
the old one and sealed afresh under the new one, in one store write; values,
fingerprints and version numbers do not change.
"""

from __future__ import annotations

from keykeeper.api.models import Kms
from keykeeper.api.reasons import EventType, Reason
from keykeeper.audit.journal import Journal
from keykeeper.controllers.apikey.versions import VersionKeeper
from keykeeper.core import store
from keykeeper.crypto.envelope import Binding
from keykeeper.providers import KeyProvider
from keykeeper.types import KeyRef


async def rewrap(
    keeper: VersionKeeper,
    ref: KeyRef,
    stored: store.Store,
    kms: Kms,
    old: KeyProvider,
    new: KeyProvider,
    journal: Journal,
) -> store.Store:
    """Re-seal every live version under the policy's KMS key (same version, same value,
    a fresh data key), after the policy named another one. One store write: a crash
    leaves every envelope under the old key or every one under the new."""
    sealed: dict[int, tuple[bytes, str, str]] = {}
    for number, envelope in sorted(stored.envelopes.items()):
        binding = Binding(ref[0], ref[1], stored.uid, number)
        value = await keeper.keyring.open(envelope, binding, old)
        made = await keeper.keyring.seal(value, binding, new)
        sealed[number] = (made.envelope, made.kms_key_id, made.provider)
    keks = sorted({kek for _, kek, _ in sealed.values()})
    before = stored.kms.provider if stored.kms else None
    detail = (
        f"versions {', '.join(map(str, sorted(sealed)))} re-wrapped from "
        f"{before} to {new.provider_id} key {', '.join(keks)}"
    )
    await journal.intend(Reason.REWRAPPED, detail)
    stored = await keeper.write(ref, stored.rewrapped(sealed, kms))
    journal.tell(EventType.NORMAL, Reason.REWRAPPED, detail)
    return stored
