"""The local master key, its subkeys, fingerprints, and passphrase derivation.

The operator's root secret is one 32-byte master key. It is never used directly:
HKDF-SHA256 splits it into independent subkeys, one per purpose, so a key used to
wrap DEKs is never also used to MAC the audit log or to fingerprint values::

    subkey(purpose) = HKDF(ikm=master, salt=b"", info=b"keykeeper.dev/local/" + purpose, 32)
    purposes: b"wrap", b"audit-mac", b"fingerprint", b"key-id", b"ownership", b"tombstone",
              b"shown-fingerprint"

The key id (which names the master key in envelopes and audit records) is the hex of
the first 8 bytes of ``subkey(b"key-id")``: stable, and revealing nothing usable.

A master key comes either from 32 random bytes (what a Kubernetes Secret holds) or
from a passphrase. Passphrase derivation records its algorithm, parameters and salt
as one string, so the same key can be derived again::

    argon2id$v=19$m=65536,t=3,p=4$<salt, base64url, no padding>
    pbkdf2-sha256$i=600000$<salt, base64url, no padding>      (FIPS mode)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keykeeper.crypto.passphrase import check_passphrase

MASTER_KEY_BYTES = 32
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_TIME = 3
ARGON2_LANES = 4
PBKDF2_MIN_ITERATIONS = 600_000
PBKDF2_MAX_ITERATIONS = 10_000_000
ARGON2_MAX_MEMORY_KIB = 1024 * 1024
ARGON2_MAX_TIME = 16
ARGON2_MAX_LANES = 16
SALT_BYTES = 16


class Purpose(StrEnum):
    WRAP = "wrap"
    AUDIT_MAC = "audit-mac"
    FINGERPRINT = "fingerprint"
    KEY_ID = "key-id"
    OWNERSHIP = "ownership"
    TOMBSTONE = "tombstone"
    SHOWN_FINGERPRINT = "shown-fingerprint"


class MasterKey:
    """A 32-byte master key and the subkeys HKDF derives from it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ValueError(f"a master key is exactly {MASTER_KEY_BYTES} bytes")
        self._key = bytes(key)
        self.key_id = self.subkey(Purpose.KEY_ID)[:8].hex()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(MASTER_KEY_BYTES))

    def subkey(self, purpose: Purpose) -> bytes:
        info = b"keykeeper.dev/local/" + purpose.value.encode()
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._key)

    def export(self) -> bytes:
        """The raw key, for writing into the Secret that holds it. Handle with care."""
        return self._key

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


def ownership_proof(
    ownership_key: bytes, key_uid: str, key_namespace: str, key_name: str, namespace: str, name: str
) -> str:
    """Proof that keykeeper wrote the Secret ``namespace/name`` for the ApiKey with ``key_uid``.

    Labels can be forged by anyone who may create a Secret; this HMAC cannot, so a
    Secret is treated as a projection (withdrawn, overwritten, attributed to a key) only
    when it carries the proof for exactly its own place and owner.
    """
    parts = (key_uid, key_namespace, key_name, namespace, name)
    message = b"".join(len(p.encode()).to_bytes(2, "big") + p.encode() for p in parts)
    return "hmac-sha256:" + hmac.new(ownership_key, message, hashlib.sha256).hexdigest()


def fingerprint(fingerprint_key: bytes, value: bytes) -> str:
    """An HMAC fingerprint of a value: comparable across versions, useless to guess from."""
    digest = hmac.new(fingerprint_key, value, hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


def shown_fingerprint(shown_key: bytes, key_uid: str, fingerprint: str) -> str:
    """A fingerprint as status, Events and audit records show it: keyed by the ApiKey's
    uid too, so two keys' fingerprints are equal only by chance (K15: no equality
    oracle across keys for whoever reads the audit stream). Within one key it is as
    comparable as the fingerprint it is made from."""
    parts = (key_uid.encode(), fingerprint.encode())
    message = b"".join(len(p).to_bytes(2, "big") + p for p in parts)
    return "hmac-sha256:" + hmac.new(shown_key, message, hashlib.sha256).hexdigest()[:32]


class KdfAlgorithm(StrEnum):
    ARGON2ID = "argon2id"
    PBKDF2_SHA256 = "pbkdf2-sha256"


@dataclass(frozen=True)
class PassphraseKdf:
    """How a master key was derived from a passphrase (everything but the passphrase)."""

    algorithm: KdfAlgorithm
    salt: bytes
    memory_kib: int = ARGON2_MEMORY_KIB
    time_cost: int = ARGON2_TIME
    lanes: int = ARGON2_LANES
    iterations: int = PBKDF2_MIN_ITERATIONS

    @classmethod
    def new(cls, *, fips: bool = False) -> PassphraseKdf:
        algorithm = KdfAlgorithm.PBKDF2_SHA256 if fips else KdfAlgorithm.ARGON2ID
        return cls(algorithm, os.urandom(SALT_BYTES))

    def encode(self) -> str:
        salt = base64.urlsafe_b64encode(self.salt).rstrip(b"=").decode()
        if self.algorithm is KdfAlgorithm.ARGON2ID:
            params = f"m={self.memory_kib},t={self.time_cost},p={self.lanes}"
            return f"argon2id$v=19${params}${salt}"
        return f"pbkdf2-sha256$i={self.iterations}${salt}"

    @classmethod
    def decode(cls, text: str) -> PassphraseKdf:
        parts = text.split("$")
        try:
            if parts[0] == KdfAlgorithm.ARGON2ID and len(parts) == 4 and parts[1] == "v=19":
                params = dict(item.split("=", 1) for item in parts[2].split(","))
                return cls(
                    KdfAlgorithm.ARGON2ID,
                    _b64(parts[3]),
                    memory_kib=int(params["m"]),
                    time_cost=int(params["t"]),
                    lanes=int(params["p"]),
                )
            if parts[0] == KdfAlgorithm.PBKDF2_SHA256 and len(parts) == 3:
                key, _, value = parts[1].partition("=")
                if key == "i":
                    return cls(KdfAlgorithm.PBKDF2_SHA256, _b64(parts[2]), iterations=int(value))
        except (KeyError, ValueError):
            pass
        raise ValueError(
            "a passphrase KDF is written 'argon2id$v=19$m=..,t=..,p=..$<salt>' "
            "or 'pbkdf2-sha256$i=<iterations>$<salt>'"
        )

    def validate(self) -> None:
        """Refuse parameters weaker than the ones keykeeper writes, each on its own (not
        as a tuple: m=1 GiB does not make up for t=1), and ones so large that deriving
        would exhaust the operator (the parameters sit in a Secret an attacker may edit)."""
        if not SALT_BYTES <= len(self.salt) <= 64:
            raise ValueError(f"the KDF salt must be {SALT_BYTES} to 64 bytes")
        if self.algorithm is KdfAlgorithm.ARGON2ID:
            if not ARGON2_MEMORY_KIB <= self.memory_kib <= ARGON2_MAX_MEMORY_KIB:
                raise ValueError(
                    f"Argon2id memory must be {ARGON2_MEMORY_KIB} to {ARGON2_MAX_MEMORY_KIB} KiB"
                )
            if not ARGON2_TIME <= self.time_cost <= ARGON2_MAX_TIME:
                raise ValueError(f"Argon2id time cost must be {ARGON2_TIME} to {ARGON2_MAX_TIME}")
            if not 1 <= self.lanes <= ARGON2_MAX_LANES:
                raise ValueError(f"Argon2id lanes must be 1 to {ARGON2_MAX_LANES}")
        elif not PBKDF2_MIN_ITERATIONS <= self.iterations <= PBKDF2_MAX_ITERATIONS:
            raise ValueError(
                f"PBKDF2-HMAC-SHA256 needs {PBKDF2_MIN_ITERATIONS} to "
                f"{PBKDF2_MAX_ITERATIONS} iterations"
            )


def derive_master_key(passphrase: str, kdf: PassphraseKdf) -> MasterKey:
    """Derive the master key; a weak passphrase raises :class:`WeakPassphrase`."""
    check_passphrase(passphrase)
    kdf.validate()
    secret = passphrase.encode("utf-8")
    if kdf.algorithm is KdfAlgorithm.ARGON2ID:
        from argon2.low_level import Type, hash_secret_raw

        key = hash_secret_raw(
            secret,
            kdf.salt,
            time_cost=kdf.time_cost,
            memory_cost=kdf.memory_kib,
            parallelism=kdf.lanes,
            hash_len=MASTER_KEY_BYTES,
            type=Type.ID,
        )
    else:
        key = hashlib.pbkdf2_hmac("sha256", secret, kdf.salt, kdf.iterations, MASTER_KEY_BYTES)
    return MasterKey(key)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
