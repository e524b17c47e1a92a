"""The cluster's sealing keys: made, renewed, cut off, and published.

The private keys live in the Secret ``<ns>/keykeeper-sealing-keys``, each wrapped by
the local provider (bound to its key id); the annotation ``keykeeper.dev/sealing-keys``
records when each was made and retired, ``keykeeper.dev/current-key-id`` the newest.

* **Renewal.** A new key every ``renewal`` (default 30 days; None: never). Older keys
  stay, so values sealed to them still open.
* **Cutoff.** With ``cutoff`` set, a key retired longer ago than that no longer opens
  anything, and its private key is dropped from the Secret at the next renewal.
* **Publishing.** The ConfigMap ``keykeeper-sealing-public`` advertises the newest
  public key and the fingerprints of every key that still opens. It is written from the
  Secret, never read as a source: a changed or deleted ConfigMap is put back at the next
  check (every ``KEYKEEPER_SEALING_CHECK`` seconds, default 60). Its annotation
  ``keykeeper.dev/renew-requested-at`` (set by ``keykeeper cert --rotate``) asks for a
  renewal now.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from keykeeper.api import labels, timestamps
from keykeeper.api.models import SecretType
from keykeeper.api.timestamps import rfc3339, rfc3339_micro
from keykeeper.crypto.envelope import Binding, open_envelope, seal_envelope
from keykeeper.crypto.sealed import Opened, SealingKeyPair, key_id_of, open_sealed
from keykeeper.errors import Conflict, InvalidValue
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import configmap_path, secret_path
from keykeeper.providers.local import LocalProvider
from keykeeper.types import Body

log = logging.getLogger("keykeeper.sealing")

SEALING_SECRET = "keykeeper-sealing-keys"  # noqa: S105 - a Secret name
SEALING_PUBLIC = "keykeeper-sealing-public"
SEALING_KIND = "keykeeper.dev/v1alpha1/SealingKey"
CURRENT = "keykeeper.dev/current-key-id"
HISTORY = "keykeeper.dev/sealing-keys"
RENEW_REQUESTED = "keykeeper.dev/renew-requested-at"
FUTURE_SKEW = 3600  # seconds a sealing machine's clock may run ahead


@dataclass(frozen=True)
class KeyDates:
    created: datetime
    retired: datetime | None = None


class SealingKeys:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        local: LocalProvider,
        renewal: timedelta | None,
        cutoff: timedelta | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        v1_until: datetime | None = None,
    ) -> None:
        self.kube, self.namespace, self.local = kube, namespace, local
        self.renewal, self.cutoff, self.clock = renewal, cutoff, clock
        self.v1_until = v1_until
        self.pairs: dict[str, SealingKeyPair] = {}
        self.dates: dict[str, KeyDates] = {}
        self.current = ""
        self._handled_request = ""

    # -- what opens ----------------------------------------------------------------------

    def usable(self) -> dict[str, SealingKeyPair]:
        """The keys a sealed value may be opened with now (the cutoff applied)."""
        return {k: p for k, p in self.pairs.items() if not self._cut_off(k)}

    def open(
        self, text: str, namespace: str, name: str, policy: str, *, refuse_unbound: bool = False
    ) -> Opened:
        """A sealed value for ``namespace/name`` under ``policy``, opened with a key that
        may open it now; a key past the cutoff is refused with what to do about it.

        An unbound v1 value opens only inside the cluster's migration window
        (``KEYKEEPER_SEALED_V1_UNTIL``) and only if the policy does not refuse it; a
        value sealed more than an hour in the future is refused (its sealed-at time is
        a high-water mark later seals must pass)."""
        refused = self.refusal(key_id_of(text))
        if refused is not None:
            raise refused
        now = self.clock()
        window = self.v1_until is not None and now < self.v1_until and not refuse_unbound
        opened = open_sealed(text, namespace, name, policy, self.usable(), accept_v1=window)
        if opened.sealed_at is not None and opened.sealed_at > now.timestamp() + FUTURE_SKEW:
            raise InvalidValue(
                "the value's seal is dated in the future; check the sealing machine's clock "
                "and seal it again"
            )
        return opened

    def refusal(self, key_id: str) -> InvalidValue | None:
        if key_id in self.pairs and self._cut_off(key_id):
            retired = self.dates[key_id].retired
            assert retired is not None  # only a retired key is past its cutoff
            return InvalidValue(
                f"the value was sealed to sealing key {key_id}, retired at "
                f"{rfc3339(retired)} and past the cutoff; re-seal it with "
                "keykeeper seal"
            )
        return None

    def _cut_off(self, key_id: str) -> bool:
        return self._past_cutoff(self.dates.get(key_id, KeyDates(self.clock())), self.clock())

    def _past_cutoff(self, dates: KeyDates, now: datetime) -> bool:
        if self.cutoff is None or dates.retired is None:
            return False
        return now - dates.retired > self.cutoff

    # -- loading and renewing --------------------------------------------------------------

    async def load(self) -> None:
        found = await self.kube.get_or_none(secret_path(self.namespace, SEALING_SECRET))
        if found is None:
            found = await self._write(None, {}, {})
        self._read(found)
        await self.check()

    async def check(self) -> None:
        """Renew if due or asked, and put the ConfigMap back if it differs."""
        published = await self.kube.get_or_none(configmap_path(self.namespace, SEALING_PUBLIC))
        request = ((published or {}).get("metadata", {}).get("annotations") or {}).get(
            RENEW_REQUESTED, ""
        )
        created = self.dates[self.current].created if self.current else None
        due = created is None or (
            self.renewal is not None and self.clock() - created >= self.renewal
        )
        requested_at = _parse(request)
        asked = (
            requested_at is not None
            and request != self._handled_request
            and (created is None or requested_at > created)
        )
        if due or asked:
            self._handled_request = request
            await self.renew()
            published = None  # rewritten below
        await self._publish(published)

    async def renew(self) -> None:
        for attempt in range(3):  # another replica may renew at the same time
            found = await self.kube.get(secret_path(self.namespace, SEALING_SECRET))
            self._read(found)
            pair = SealingKeyPair.generate()
            now = self.clock()
            dates = {k: KeyDates(d.created, d.retired or now) for k, d in self.dates.items()}
            dates[pair.key_id] = KeyDates(now)
            pairs = {**self.pairs, pair.key_id: pair}
            for key_id in [k for k in pairs if self._past_cutoff(dates[k], now)]:
                del pairs[key_id], dates[key_id]  # past the cutoff: the private key goes
            try:
                found = await self._write(found, pairs, dates, current=pair.key_id)
            except Conflict:
                if attempt == 2:
                    raise
                continue
            self._read(found)
            log.info("sealing key renewed: %s", pair.key_id)
            return

    def _read(self, found: Body) -> None:
        annotations = found["metadata"].get("annotations") or {}
        made = _parse(found["metadata"].get("creationTimestamp", "")) or self.clock()
        history = json.loads(annotations.get(HISTORY) or "{}")
        self.pairs, self.dates = {}, {}
        for key_id, encoded in (found.get("data") or {}).items():
            binding = Binding(self.namespace, SEALING_SECRET, key_id, 1, kind=SEALING_KIND)
            private = open_envelope(base64.b64decode(encoded), binding, lambda _: self.local)
            self.pairs[key_id] = SealingKeyPair(private)
            entry = history.get(key_id) or {}
            self.dates[key_id] = KeyDates(
                _parse(entry.get("createdAt", "")) or made, _parse(entry.get("retiredAt", ""))
            )
        self.current = annotations.get(CURRENT, "")

    async def _write(
        self,
        found: Body | None,
        pairs: dict[str, SealingKeyPair],
        dates: dict[str, KeyDates],
        current: str = "",
    ) -> Body:
        if not pairs:
            pair = SealingKeyPair.generate()
            pairs, dates, current = (
                {pair.key_id: pair},
                {pair.key_id: KeyDates(self.clock())},
                pair.key_id,
            )
        data = {}
        for key_id, pair in pairs.items():
            binding = Binding(self.namespace, SEALING_SECRET, key_id, 1, kind=SEALING_KIND)
            data[key_id] = base64.b64encode(
                seal_envelope(pair.private_bytes(), binding, self.local)
            ).decode()
        history = {
            k: {
                "createdAt": _show(d.created),
                **({"retiredAt": _show(d.retired)} if d.retired else {}),
            }
            for k, d in dates.items()
        }
        metadata: dict[str, Any] = {
            "name": SEALING_SECRET,
            "namespace": self.namespace,
            "labels": {labels.MANAGED_BY: labels.KEYKEEPER, labels.ROLE: "sealing-keys"},
            "annotations": {CURRENT: current, HISTORY: json.dumps(history, sort_keys=True)},
        }
        body = {"apiVersion": "v1", "kind": "Secret", "type": SecretType.SEALING_KEYS,
                "metadata": metadata, "data": data}  # fmt: skip
        if found is None:
            try:
                return await self.kube.create(secret_path(self.namespace), body)
            except Conflict:  # made by another replica first
                return await self.kube.get(secret_path(self.namespace, SEALING_SECRET))
        metadata["resourceVersion"] = found["metadata"]["resourceVersion"]
        return await self.kube.replace(secret_path(self.namespace, SEALING_SECRET), body)

    async def _publish(self, existing: Body | None) -> None:
        pair = self.pairs[self.current]
        data = {
            "keyId": pair.key_id,
            "fingerprint": pair.public.fingerprint,
            "suite": "HPKE ML-KEM-768+X25519 / HKDF-SHA256 / AES-256-GCM",
            "publicKey": base64.b64encode(pair.public.raw).decode(),
            "validFingerprints": "\n".join(
                sorted(p.public.fingerprint for p in self.usable().values())
            ),
        }
        if existing is not None and existing.get("data") == data:
            return
        path = configmap_path(self.namespace, SEALING_PUBLIC)
        current = existing or await self.kube.get_or_none(path)
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": SEALING_PUBLIC,
                "namespace": self.namespace,
                "labels": {labels.MANAGED_BY: labels.KEYKEEPER},
                "annotations": {k: v for k, v in annotations.items() if k == RENEW_REQUESTED},
            },
            "data": data,
        }
        if current is None:
            await self.kube.create(configmap_path(self.namespace), body)
        else:
            log.info("publishing sealing key %s (the ConfigMap differed)", pair.key_id)
            await self.kube.replace(path, body)


def _show(when: datetime | None) -> str:
    return rfc3339_micro(when) if when else ""


def _parse(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return timestamps.parse(text)
    except ValueError:
        return None
