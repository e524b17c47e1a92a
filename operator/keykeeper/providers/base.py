"""The one small interface every key provider implements.

A provider holds key-encryption keys (KEKs) and does three things with them: wrap a
data key under the current KEK, unwrap a data key under the KEK (and version) an
envelope names, and say whether it is healthy. Everything a provider needs beyond
that (SDK clients, sessions, credentials) stays inside its own file.

Errors follow ``keykeeper.errors``: an unreachable or throttling peer is
``ProviderUnavailable`` (transient); a KEK that is disabled, destroyed or unknown is
``KeyDisabled``; a wrapped key that fails to authenticate for its context is
``IntegrityError``; a bad configuration or a missing extra is ``InvalidProviderConfig``.
Messages name KEK ids and resources, never key material.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from keykeeper.api.provider_options import Capability, parse_options
from keykeeper.crypto.envelope import WrappedKey
from keykeeper.errors import InvalidProviderConfig

OptionsT = TypeVar("OptionsT")
PER_KEY = frozenset({Capability.PER_KEY_KEK, Capability.KEK_DESTRUCTION})
UID = "keykeeper.dev/uid"  # the resource uid in a provider context


@dataclass(frozen=True)
class ProviderSettings:
    """What a KeyPolicy's ``spec.kms`` and the operator's configuration give a provider.

    ``key_ref`` is the provider-specific KEK reference (an ARN, a key URL, a key resource
    name, a token label); ``credentials`` are the string values of the credentials
    Secret (or of the operator's own configuration); ``options`` are non-secret knobs.
    """

    key_ref: str = ""
    credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # credentials never reach a log through repr()
        return f"ProviderSettings(key_ref={self.key_ref!r}, options={dict(self.options)!r})"


class KeyProvider(ABC):
    """Wraps and unwraps data keys under key-encryption keys it holds."""

    provider_id: ClassVar[str]
    # wraps in this process without I/O (the local provider): the vault calls it inline,
    # where a provider that talks to a KMS or HSM is called from a worker thread
    in_process: ClassVar[bool] = False

    @property
    def executor(self) -> ThreadPoolExecutor | None:
        """Where its blocking calls run (``providers.threads``): None for in-process work;
        a remote provider without its own (unguarded, in tests) uses a private pool."""
        return None if self.in_process else _UNGUARDED

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this provider, as configured, can do (declared, never inferred)."""
        return frozenset()

    @abstractmethod
    def current_kek_id(self) -> str:
        """The id, with version, of the KEK that :meth:`wrap` uses now."""

    @abstractmethod
    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Wrap ``dek`` under the current KEK, bound to ``context`` where the peer allows."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        """Unwrap with the KEK ``wrapped.kek_id`` names; the context must match the wrap's."""

    @abstractmethod
    def check(self) -> None:
        """Raise ``ProviderUnavailable`` or ``KeyDisabled`` unless the current KEK is usable."""

    def destroy_kek(self, kek_id: str) -> bool:
        """Destroy a per-key KEK for cryptographic erasure; False where there is none."""
        return False

    def close(self) -> None:
        """Release connections and sessions."""


_UNGUARDED = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keykeeper-unguarded")


def encode_context(kek_id: str, context: Mapping[str, str]) -> bytes:
    """Canonical bytes of a KEK id and a context, for providers that bind them as AAD."""
    parts = [kek_id, *(item for key in sorted(context) for item in (key, context[key]))]
    out = bytearray(b"keykeeper.dev/wrap/v1")
    for part in parts:
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def per_key_capabilities(per_key: bool) -> frozenset[Capability]:
    """What a provider with per-key KEKs declares: its own KEK per key, destroyable."""
    return PER_KEY if per_key else frozenset()


def resource_uid(context: Mapping[str, str]) -> str:
    """The uid a per-key KEK is named after; refused when the context lacks it."""
    uid = context.get(UID, "")
    if not uid:
        raise InvalidProviderConfig("per-key KEKs need the resource uid in the context")
    return uid


def typed_options(provider_id: str, settings: ProviderSettings, model: type[OptionsT]) -> OptionsT:
    """The provider's typed options (``provider_options``); bad ones are its config error."""
    try:
        options = parse_options(provider_id, dict(settings.options))
    except ValueError as exc:
        raise InvalidProviderConfig(str(exc)) from None
    assert isinstance(options, model)
    return options
