"""The PKCS#11 provider: KEKs that never leave an HSM (tested against SoftHSM2).

The KEK is a non-extractable, sensitive AES-256 secret key object on the token, found
by label (``settings.key_ref``) and created when ``options["create"]`` is true. Its KEK
id is ``<label>#<CKA_ID hex>``: the CKA_ID is random per generated key and serves as
its version. A DEK is wrapped by encrypting it on the token:

* ``gcm`` (preferred): ``CKM_AES_GCM`` with a random 96-bit IV and the KEK id and
  context as AAD; the blob is ``b"G" || iv || ciphertext || tag``.
* ``kwp`` (where the token lacks GCM): ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649), which
  has no AAD; the envelope's own AAD still binds the value to its resource. The blob
  is ``b"K" || wrapped``.

``options["per-key"]`` set to true gives every resource its own KEK, labelled
``<label>/<uid>``, so erasing a key can destroy the KEK object itself
(:meth:`Pkcs11Provider.destroy_kek`).

Options are typed (``provider_options.Pkcs11Options``); sessions, the module lock and
loading live in ``pkcs11_sessions``. The PIN comes only from ``credentials["pin"]``,
never logged. The module must be one ``KEYKEEPER_PKCS11_MODULES`` allows (default: the
SoftHSM2 paths), so no KeyPolicy makes the operator load a library of its choosing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin, Key, SecretKey, UnwrapMixin, WrapMixin

from keykeeper.api.provider_options import Capability, Pkcs11Options
from keykeeper.crypto.envelope import WrappedKey
from keykeeper.errors import (
    IntegrityError,
    InvalidProviderConfig,
    KeyDisabled,
)
from keykeeper.providers.base import (
    KeyProvider,
    ProviderSettings,
    encode_context,
    per_key_capabilities,
    resource_uid,
    typed_options,
)
from keykeeper.providers.pkcs11_sessions import SessionPool

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_IV = 12


# What a token answers when the wrapped bytes do not authenticate.
_REJECTED = (
    p11err.EncryptedDataInvalid,
    p11err.EncryptedDataLenRange,
    p11err.WrappedKeyInvalid,
    p11err.WrappedKeyLenRange,
    p11err.MechanismParamInvalid,
    p11err.FunctionFailed,
    p11err.GeneralError,
)


class _Kek(SecretKey, EncryptMixin, DecryptMixin, WrapMixin, UnwrapMixin):
    """What a KEK object on the token offers (python-pkcs11 mixes these in at run time)."""


class Pkcs11Provider(KeyProvider):
    provider_id = "pkcs11"

    def __init__(
        self,
        *,
        module: str,
        token_label: str,
        pin: str,
        kek_label: str,
        create: bool = False,
        per_key: bool = False,
        mechanism: str = "auto",
        pool_size: int = 4,
    ) -> None:
        self._label = kek_label
        self._create = create
        self._per_key = per_key
        self._sessions = SessionPool(module, token_label, pin, pool_size)
        mechanisms = self._sessions.mechanisms
        if mechanism == "auto":
            mechanism = "gcm" if Mechanism.AES_GCM in mechanisms else "kwp"
        if mechanism not in ("gcm", "kwp"):
            raise InvalidProviderConfig("mechanism must be auto, gcm or kwp")
        self._mechanism = mechanism
        if not per_key:
            self._default_kek_id = self._kek_id_for(self._label)

    # -- the interface -------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[Capability]:
        return per_key_capabilities(self._per_key)

    def current_kek_id(self) -> str:
        if self._per_key:
            return f"{self._label}/<uid>"
        return self._default_kek_id

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        if self._per_key:
            uid = resource_uid(context)
            kek_id = self._kek_id_for(f"{self._label}/{uid}", create=True)
        else:
            kek_id = self._default_kek_id
        aad = encode_context(kek_id, context)
        with self._sessions.session() as session:
            key = self._find(session, kek_id)
            if self._mechanism == "gcm":
                iv = os.urandom(_IV)
                sealed = _bytes(
                    key.encrypt(
                        dek, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, aad)
                    )
                )
                return WrappedKey(kek_id, b"G" + iv + sealed)
            dek_object = session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: dek,
                    Attribute.TOKEN: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.SENSITIVE: False,
                }
            )
            try:
                wrapped = key.wrap_key(cast(Key, dek_object), mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                dek_object.destroy()
            return WrappedKey(kek_id, b"K" + wrapped)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        blob = wrapped.blob
        with self._sessions.session() as session:
            key = self._find(session, wrapped.kek_id)
            try:
                if blob[:1] == b"G" and len(blob) > 1 + _IV + 16:
                    aad = encode_context(wrapped.kek_id, context)
                    params = GCMParams(blob[1 : 1 + _IV], aad)
                    return _bytes(
                        key.decrypt(
                            blob[1 + _IV :], mechanism=Mechanism.AES_GCM, mechanism_param=params
                        )
                    )
                if blob[:1] == b"K" and len(blob) > 8:
                    obj = key.unwrap_key(
                        ObjectClass.SECRET_KEY,
                        KeyType.AES,
                        blob[1:],
                        mechanism=Mechanism.AES_KEY_WRAP_PAD,
                        store=False,
                        template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
                    )
                    try:
                        value: bytes = obj[Attribute.VALUE]
                        return value
                    finally:
                        obj.destroy()
            except _REJECTED:
                # The token found the key and answered in this very session, so a
                # failure here is about the data; SoftHSM2 reports a GCM tag mismatch
                # as CKR_GENERAL_ERROR.
                pass
            raise IntegrityError(
                f"the data key wrapped under {wrapped.kek_id} does not authenticate "
                "for this resource"
            )

    def check(self) -> None:
        with self._sessions.session() as session:
            if not self._per_key:
                self._find(session, self._default_kek_id)

    def destroy_kek(self, kek_id: str) -> bool:
        label, _, _ = kek_id.partition("#")
        if not self._per_key or label == self._label:
            return False  # the shared KEK guards other keys; never destroyed from here
        with self._sessions.session() as session:
            try:
                self._find(session, kek_id).destroy()
            except KeyDisabled:
                return True  # already gone: erasure is idempotent
        return True

    def close(self) -> None:
        self._sessions.close()

    # -- internals -------------------------------------------------------------------------

    def _kek_id_for(self, label: str, *, create: bool | None = None) -> str:
        with self._sessions.session() as session:
            found = self._search(session, label)
        if found is not None:
            return found
        if not (self._create if create is None else create):
            raise KeyDisabled(f"no PKCS#11 key labelled {label!r} on the token")
        with self._sessions.session() as session:
            return self._search(session, label) or self._generate(session, label)

    @staticmethod
    def _search(session: pkcs11.Session, label: str) -> str | None:
        query = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        keys = list(session.get_objects(query))
        if len(keys) > 1:
            raise InvalidProviderConfig(f"more than one PKCS#11 key is labelled {label!r}")
        return f"{label}#{bytes(keys[0][Attribute.ID]).hex()}" if keys else None

    @staticmethod
    def _generate(session: pkcs11.Session, label: str) -> str:
        key_id = os.urandom(8)
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            id=key_id,
            store=True,
            template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.WRAP: True,
                Attribute.UNWRAP: True,
                Attribute.PRIVATE: True,
            },
        )
        return f"{label}#{key_id.hex()}"

    def _find(self, session: pkcs11.Session, kek_id: str) -> _Kek:
        label, sep, id_hex = kek_id.partition("#")
        try:
            key_id = bytes.fromhex(id_hex)
        except ValueError:
            key_id = b""
        if not sep or not key_id:
            raise KeyDisabled(f"{kek_id!r} is not a PKCS#11 KEK id of this provider")
        try:
            key = session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label, id=key_id
            )
        except p11err.NoSuchKey:
            raise KeyDisabled(
                f"the PKCS#11 KEK {kek_id} is not on the token (destroyed?)"
            ) from None
        return cast(_Kek, key)


def _bytes(result: bytes | Iterator[bytes]) -> bytes:
    """python-pkcs11 returns bytes for a single buffer (what is passed here)."""
    return result if isinstance(result, bytes) else b"".join(result)


ALLOWED_MODULES = (DEFAULT_MODULE, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")


def allowed_modules() -> tuple[str, ...]:
    configured = os.environ.get("KEYKEEPER_PKCS11_MODULES", "")
    return tuple(p for p in configured.split(":") if p) or ALLOWED_MODULES


def create(settings: ProviderSettings) -> Pkcs11Provider:
    options = typed_options("pkcs11", settings, Pkcs11Options)
    allowed = allowed_modules()
    module = options.module or allowed[0]
    if module not in allowed:
        raise InvalidProviderConfig(
            "options.module is not one of the PKCS#11 modules this operator allows "
            "(KEYKEEPER_PKCS11_MODULES)"
        )
    return Pkcs11Provider(
        module=module,
        token_label=options.token,
        pin=_pin(settings),
        kek_label=settings.key_ref or "keykeeper-kek",
        create=options.create,
        per_key=options.per_key,
        mechanism=options.mechanism,
        pool_size=options.pool_size,
    )


def _pin(settings: ProviderSettings) -> str:
    if pin := settings.credentials.get("pin", ""):
        return pin
    raise InvalidProviderConfig("no PKCS#11 PIN: the credentials Secret needs the key 'pin'")
