"""The running operator: its master key, sealing keys, world, queue and reconciler.

Start-up order matters for safety: the master key and the world (namespaces,
policies, projected Secrets) are loaded *before* any key is reconciled, so a key is
never judged against a half-known cluster (which could withdraw projections that
are in fact authorized).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field

from keykeeper import labels
from keykeeper.anchor import Anchorer
from keykeeper.audit import AuditLog
from keykeeper.crypto.kdf import MasterKey, PassphraseKdf, derive_master_key
from keykeeper.errors import KeykeeperError
from keykeeper.events import EventSink
from keykeeper.kube import (
    ApiUnavailable,
    Conflict,
    Kube,
    keypolicy_path,
    secret_path,
)
from keykeeper.policies import reconcile_policy
from keykeeper.providers import registry
from keykeeper.reconcile import Reconciler
from keykeeper.sealing import SealingKeys
from keykeeper.settings import Settings
from keykeeper.vault import Vault
from keykeeper.workqueue import WorkQueue
from keykeeper.world import KeyRef, World

log = logging.getLogger("keykeeper.runtime")


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    world: World = field(default_factory=World)
    vault: Vault | None = None
    reconciler: Reconciler | None = None
    sealing: SealingKeys | None = None
    queue: WorkQueue[KeyRef] | None = None
    policy_queue: WorkQueue[str] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    anchorer: Anchorer | None = None

    async def stop(self) -> None:
        """Graceful shutdown: the audit log's head is anchored before the process ends."""
        for task in self.tasks:
            task.cancel()
        if self.anchorer is not None:
            await self.anchorer.anchor()
        if self.vault is not None:
            self.vault.close()
        await self.kube.close()

    async def start(self) -> None:
        master = await self._master_key()
        self.vault = Vault(master, registry)
        await self._sealing_keys()
        audit = AuditLog(self.settings.audit_log, self.vault.audit_key)
        self.anchorer = Anchorer(self.kube, self.settings.namespace, audit, self.vault.audit_key)
        await self.anchorer.check_at_start()
        sink = EventSink(self.kube, self.settings.instance)
        self.reconciler = Reconciler(
            self.kube, self.world, self.vault, sink, audit, self.settings.namespace
        )
        self.queue = WorkQueue(self.reconciler.reconcile, self.settings.workers)
        vault = self.vault

        async def policy(name: str) -> float | None:
            return await reconcile_policy(
                self.kube, self.world, vault, name, self.settings.namespace
            )

        self.policy_queue = WorkQueue(policy, 1)
        self.reconciler.policy_changed = self.policy_queue.add
        loop = asyncio.get_running_loop()

        def provider_back() -> None:  # from a probe's thread
            loop.call_soon_threadsafe(self._provider_back)

        self.vault.on_provider_recovery = provider_back
        for attempt in range(60):  # the apiserver may still be warming its caches
            try:
                await self._preload()
                break
            except ApiUnavailable as exc:
                if attempt == 59:
                    raise
                log.info("waiting for the API to load the world: %s", exc)
                await asyncio.sleep(1.0)
        self.tasks = [
            asyncio.create_task(self.queue.run(), name="keykeeper-keys"),
            asyncio.create_task(self.policy_queue.run(), name="keykeeper-policies"),
            asyncio.create_task(self.anchorer.run(), name="keykeeper-audit-anchor"),
            asyncio.create_task(self._sealing_loop(), name="keykeeper-sealing-keys"),
        ]
        self.ready.set()

    def _provider_back(self) -> None:
        """A KMS answers again: the keys that failed on a provider (and the policies, whose
        Ready says so) are looked at now, not when their backoff ends."""
        if self.queue is None or self.reconciler is None:
            return
        for ref in list(self.reconciler.provider_failures):
            self.queue.add(ref)
        if self.policy_queue is not None:
            for name in list(self.world.policies):
                self.policy_queue.add(name)

    async def _master_key(self) -> MasterKey:
        path = secret_path(self.settings.namespace, self.settings.master_key_secret)
        found = await self.kube.get_or_none(path)
        data = (found or {}).get("data") or {}
        if self.settings.passphrase_file is not None:
            passphrase = self.settings.passphrase_file.read_text().strip()
            if "kdf" in data:
                kdf = PassphraseKdf.decode(base64.b64decode(data["kdf"]).decode())
            else:
                kdf = PassphraseKdf.new(fips=self.settings.fips)
                await self._create_master_secret({"kdf": kdf.encode().encode()})
            return derive_master_key(passphrase, kdf)
        if "master-key" in data:
            return MasterKey(base64.b64decode(data["master-key"]))
        if found is not None:
            # never generate a new key over an existing Secret: every envelope would be lost
            raise KeykeeperError(
                f"Secret {self.settings.namespace}/{self.settings.master_key_secret} exists but "
                "holds no master-key (nor kdf, in passphrase mode); refusing to start"
            )
        master = MasterKey.generate()
        if not await self._create_master_secret({"master-key": master.export()}):
            return await self._master_key()  # another replica made it first
        log.warning(
            "generated a new master key in Secret %s/%s; back it up: without it no "
            "stored key can be opened",
            self.settings.namespace,
            self.settings.master_key_secret,
        )
        return master

    async def _create_master_secret(self, data: dict[str, bytes]) -> bool:
        """The Secret holds the raw key bytes (base64 only as every Secret's data is)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.settings.master_key_secret,
                "namespace": self.settings.namespace,
                "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: "master-key"},
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        try:
            await self.kube.create(secret_path(self.settings.namespace), body)
        except Conflict:
            return False
        return True

    async def _sealing_keys(self) -> None:
        assert self.vault is not None
        self.sealing = SealingKeys(
            self.kube,
            self.settings.namespace,
            self.vault.local,
            self.settings.sealing_renewal,
            self.settings.sealing_cutoff,
        )
        await self.sealing.load()
        self.vault.sealing_keys = self.sealing.usable()
        self.vault.sealing_refusal = self.sealing.refusal

    async def _sealing_loop(self) -> None:
        """Renewal, renewal requests, the cutoff and the published ConfigMap, checked
        every ``settings.sealing_check`` seconds; a failed check is logged and retried."""
        assert self.sealing is not None and self.vault is not None  # noqa: PT018
        while True:
            await asyncio.sleep(self.settings.sealing_check)
            try:
                await self.sealing.check()
            except KeykeeperError as exc:
                log.warning("checking the sealing keys: %s", exc)
            self.vault.sealing_keys = self.sealing.usable()

    async def _preload(self) -> None:
        assert self.vault is not None
        assert self.queue is not None
        for ns in await self.kube.list("/api/v1/namespaces"):
            self.world.put_namespace(ns)
        for body in await self.kube.list(keypolicy_path()):
            self.policy_queue.add(self.world.put_policy(body).name)  # type: ignore[union-attr]
        selector = f"{labels.MANAGED_SELECTOR},{labels.ROLE}={labels.ROLE_PROJECTION}"
        for secret in await self.kube.list("/api/v1/secrets", selector):
            self.world.put_secret(secret, self.vault.fingerprint, self.vault.prove)
        for key in await self.kube.list("/apis/keykeeper.dev/v1alpha1/apikeys"):
            ref = self.world.put_key(key)
            # kopf's first list of the watch delivers every key again: the same key is no
            # change (it waits in the sweep), a changed one goes before the sweep
            self.world.saw_key(ref, key)
            self.queue.sweep(ref)
