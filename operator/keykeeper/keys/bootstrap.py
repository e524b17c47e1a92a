"""The master key at start-up: read from its Secret, derived from a passphrase, or made
once and stored; never made anew over an existing Secret (every envelope would be lost).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from keykeeper.api import labels
from keykeeper.api.models import SecretType
from keykeeper.crypto.kdf import MasterKey, PassphraseKdf, derive_master_key
from keykeeper.errors import Conflict, KeykeeperError
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import secret_path

log = logging.getLogger("keykeeper.runtime")


async def load_master_key(
    kube: Kube,
    namespace: str,
    secret: str,
    *,
    passphrase_file: Path | None = None,
    fips: bool = False,
) -> MasterKey:
    found = await kube.get_or_none(secret_path(namespace, secret))
    data = (found or {}).get("data") or {}
    if passphrase_file is not None:
        passphrase = passphrase_file.read_text().strip()
        if "kdf" in data:
            kdf = PassphraseKdf.decode(base64.b64decode(data["kdf"]).decode())
        else:
            kdf = PassphraseKdf.new(fips=fips)
            await _create(kube, namespace, secret, {"kdf": kdf.encode().encode()})
        return derive_master_key(passphrase, kdf)
    if "master-key" in data:
        return MasterKey(base64.b64decode(data["master-key"]))
    if found is not None:
        raise KeykeeperError(
            f"Secret {namespace}/{secret} exists but holds no master-key (nor kdf, in "
            "passphrase mode); refusing to start"
        )
    master = MasterKey.generate()
    if not await _create(kube, namespace, secret, {"master-key": master.export()}):
        # another replica made it first
        return await load_master_key(kube, namespace, secret, fips=fips)
    log.warning(
        "generated a new master key in Secret %s/%s; back it up: without it no stored key "
        "can be opened",
        namespace,
        secret,
    )
    return master


async def _create(kube: Kube, namespace: str, name: str, data: dict[str, bytes]) -> bool:
    """The Secret holds the raw key bytes (base64 only as every Secret's data is)."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SecretType.OPAQUE,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: "master-key"},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        "immutable": True,  # nobody, keykeeper included, replaces it in place
    }
    try:
        await kube.create(secret_path(namespace), body)
    except Conflict:
        return False
    return True
