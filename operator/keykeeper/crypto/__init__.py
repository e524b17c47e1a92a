"""Pure cryptography: the envelope format, key derivation and fingerprints.

Nothing here talks to a KMS, an HSM or Kubernetes; a key provider enters only
through the small :class:`~keykeeper.crypto.envelope.KeyWrapper` protocol.
"""

from keykeeper.crypto.envelope import (
    FORMAT_V1,
    SUITE_HKDF_SHA256_AES256GCM,
    Binding,
    Envelope,
    KeyWrapper,
    WrappedKey,
    open_envelope,
    parse,
    seal_envelope,
)
from keykeeper.crypto.kdf import MasterKey, fingerprint

__all__ = [
    "FORMAT_V1",
    "SUITE_HKDF_SHA256_AES256GCM",
    "Binding",
    "Envelope",
    "KeyWrapper",
    "MasterKey",
    "WrappedKey",
    "fingerprint",
    "open_envelope",
    "parse",
    "seal_envelope",
]
