"""Key providers: where key-encryption keys live (KMS, HSM, or the local master key)."""

from keykeeper.providers.base import KeyProvider, ProviderSettings
from keykeeper.providers.registry import Registry, registry

__all__ = ["KeyProvider", "ProviderSettings", "Registry", "registry"]
