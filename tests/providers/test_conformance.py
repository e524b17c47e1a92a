"""One conformance suite, run against every registered provider's real peer."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest

from keykeeper.api.provider_options import Capability
from keykeeper.crypto.envelope import (
    CHECK_BYTES,
    Binding,
    KeyWrapper,
    WrappedKey,
    encrypt_with_dek,
    open_envelope,
    parse,
    seal_envelope,
)
from keykeeper.errors import IntegrityError, KeyDisabled
from keykeeper.providers import KeyProvider, registry
from tests.providers.harness import VARIANTS, Variant
from tests.unit.envelopes import recheck

A = Binding("payments", "stripe", "0b7f3c1e-0000-4000-8000-000000000001", 1)
B = Binding("billing", "stripe", "0b7f3c1e-0000-4000-8000-000000000002", 1)
VALUE = b"sk_live_" + b"x" * 56


def test_every_registered_provider_has_a_conformance_variant() -> None:
    assert set(registry.ids()) == {v.provider_id for v in VARIANTS}
    assert {"local", "pkcs11", "aws", "azure", "gcp"} <= set(registry.ids())


def test_every_provider_proves_a_disabled_key_refused() -> None:
    proven = {v.provider_id for v in VARIANTS if v.disable is not None}
    assert proven == set(registry.ids())


@pytest.fixture(params=VARIANTS, ids=lambda v: v.id)
def variant(request: pytest.FixtureRequest) -> Variant:
    variant: Variant = request.param
    return variant


@pytest.fixture
def provider(variant: Variant, request: pytest.FixtureRequest) -> Iterator[KeyProvider]:
    made = variant.make(request)
    yield made
    made.close()


def resolver(provider: KeyProvider):  # type: ignore[no-untyped-def]
    def resolve(provider_id: str) -> KeyWrapper:
        if provider_id != provider.provider_id:  # a keyring that knows this provider only
            raise IntegrityError(f"the envelope names an unknown provider {provider_id!r}")
        return provider

    return resolve


def test_round_trip(provider: KeyProvider) -> None:
    blob = seal_envelope(VALUE, A, provider)
    assert open_envelope(blob, A, resolver(provider)) == VALUE
    assert parse(blob).provider_id == provider.provider_id


def test_health_and_kek_id(provider: KeyProvider, variant: Variant) -> None:
    provider.check()
    blob = seal_envelope(VALUE, A, provider)
    kek_id = parse(blob).wrapped.kek_id
    if "per-key" not in provider.current_kek_id() and "<uid>" not in provider.current_kek_id():
        assert kek_id == provider.current_kek_id()


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Binding(A.namespace, A.name, A.uid, 2), id="other-version"),
        pytest.param(B, id="other-resource"),
        pytest.param(Binding(A.namespace, A.name, "re-created-uid", 1), id="recreated-same-name"),
        pytest.param(Binding(A.namespace, "stripe2", A.uid, 1), id="other-name"),
        pytest.param(Binding(A.namespace, A.name, A.uid, 1, kind="x/v1/Other"), id="other-kind"),
    ],
)
def test_wrong_binding_fails(provider: KeyProvider, other: Binding) -> None:
    blob = seal_envelope(VALUE, A, provider)
    with pytest.raises(IntegrityError):
        open_envelope(blob, other, resolver(provider))


def test_ciphertexts_swapped_between_resources_fail(provider: KeyProvider) -> None:
    blob_a = seal_envelope(VALUE, A, provider)
    blob_b = seal_envelope(b"another value of resource b", B, provider)
    with pytest.raises(IntegrityError):
        open_envelope(blob_a, B, resolver(provider))
    with pytest.raises(IntegrityError):
        open_envelope(blob_b, A, resolver(provider))
    # the wrapped DEK of A spliced into B's envelope (check bytes recomputed, as an
    # attacker would) must not open either
    env_a, env_b = parse(blob_a), parse(blob_b)
    spliced = splice_wrapped(blob_b, env_a.wrapped)
    with pytest.raises(IntegrityError):
        open_envelope(spliced, B, resolver(provider))
    assert env_b.wrapped != env_a.wrapped


def splice_wrapped(blob: bytes, wrapped: WrappedKey) -> bytes:
    env = parse(blob)
    kek = wrapped.kek_id.encode()
    header = (
        env.header[:2]
        + bytes([len(env.provider_id)])
        + env.provider_id.encode()
        + struct.pack(">H", len(kek))
        + kek
        + struct.pack(">H", len(wrapped.blob))
        + wrapped.blob
        + env.salt
        + env.commitment
        + env.nonce
    )
    return recheck(header + struct.pack(">I", len(env.ciphertext)) + env.ciphertext)


def test_truncated_envelopes_fail(provider: KeyProvider) -> None:
    blob = seal_envelope(VALUE, A, provider)
    body = blob[:-CHECK_BYTES]
    for length in range(len(blob)):
        with pytest.raises(IntegrityError):
            open_envelope(blob[:length], A, resolver(provider))
    for length in range(len(body)):
        # truncated and re-checked, as an attacker would: the parser's bounds must catch it
        with pytest.raises(IntegrityError):
            open_envelope(recheck(body[:length]), A, resolver(provider))


def test_bit_flipped_envelopes_fail(provider: KeyProvider, variant: Variant) -> None:
    blob = seal_envelope(VALUE, A, provider)
    body_len = len(blob) - CHECK_BYTES
    for index in range(len(blob)):
        flipped = bytearray(blob)
        flipped[index] ^= 1 << (index % 8)
        with pytest.raises(IntegrityError):
            open_envelope(bytes(flipped), A, resolver(provider))
    # the same flips with the check bytes recomputed reach the provider and AES-GCM;
    # a flip inside the KEK id may name a key that does not exist (KeyDisabled)
    env = parse(blob)
    kek_start = 3 + len(env.provider_id) + 2
    kek_end = kek_start + len(env.wrapped.kek_id.encode())
    blob_end = kek_end + 2 + len(env.wrapped.blob)
    if variant.blob_names_kek:
        kek_end = blob_end  # see Variant.blob_names_kek
    for index in range(body_len):
        flipped = bytearray(blob[:body_len])
        flipped[index] ^= 1 << (index % 8)
        expected: tuple[type[Exception], ...] = (IntegrityError,)
        if kek_start <= index < kek_end:
            expected = (IntegrityError, KeyDisabled)
        with pytest.raises(expected):
            open_envelope(recheck(bytes(flipped)), A, resolver(provider))


def test_commitment_is_checked_before_decrypting(provider: KeyProvider) -> None:
    blob = seal_envelope(VALUE, A, provider)
    env = parse(blob)
    dek = provider.unwrap(env.wrapped, A.provider_context())
    forged = bytearray(encrypt_with_dek(VALUE, dek, A, provider.provider_id, env.wrapped))
    commitment_at = len(env.header) - 12 - 32
    forged[commitment_at] ^= 0x80
    with pytest.raises(IntegrityError, match="commitment"):
        open_envelope(recheck(bytes(forged[:-CHECK_BYTES])), A, resolver(provider))


def test_disabled_or_destroyed_key(provider: KeyProvider, variant: Variant) -> None:
    if variant.id == "pkcs11-shared-kek":
        # the shared KEK guards every key under it: the provider refuses to destroy it
        blob = seal_envelope(VALUE, A, provider)
        assert provider.destroy_kek(parse(blob).wrapped.kek_id) is False
        assert open_envelope(blob, A, resolver(provider)) == VALUE
        return
    if variant.disable is None:
        # this peer cannot take a key away; the variant is counted as not proving it
        # (test_every_provider_proves_a_disabled_key_refused), and what it can show is
        # that the envelope still opens: nothing in keykeeper refused it by mistake
        blob = seal_envelope(VALUE, A, provider)
        assert open_envelope(blob, A, resolver(provider)) == VALUE
        return
    blob_a = seal_envelope(VALUE, A, provider)
    variant.disable(provider, parse(blob_a).wrapped)
    with pytest.raises(KeyDisabled):
        open_envelope(blob_a, A, resolver(provider))


def test_concurrent_use_from_many_threads(provider: KeyProvider) -> None:
    errors: list[BaseException] = []
    results: list[bool] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                binding = Binding("ns", f"key-{n}", f"uid-{n}", i + 1)
                value = f"value-{n}-{i}".encode()
                blob = seal_envelope(value, binding, provider)
                results.append(open_envelope(blob, binding, resolver(provider)) == value)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(results) == 200
    assert all(results)


def test_declared_capabilities_hold(provider: KeyProvider, variant: Variant) -> None:
    """What a provider declares (never inferred from a KEK id) is what it does."""
    other = Binding(A.namespace, "other", "0b7f3c1e-0000-4000-8000-0000000000ff", 1)
    blob_a, blob_o = seal_envelope(VALUE, A, provider), seal_envelope(VALUE, other, provider)
    kek_a, kek_o = parse(blob_a).wrapped.kek_id, parse(blob_o).wrapped.kek_id
    if Capability.PER_KEY_KEK in provider.capabilities:
        assert kek_a != kek_o, "per-key KEKs: each resource has its own"
    else:
        assert kek_a == kek_o, "one KEK for every resource"
    destroyed = provider.destroy_kek(kek_a)
    assert destroyed == (Capability.KEK_DESTRUCTION in provider.capabilities)
    if destroyed and variant.disable is None:
        return  # the peer does not refuse a key it was told to destroy (see harness.VARIANTS)
    if destroyed:
        with pytest.raises(KeyDisabled):
            open_envelope(blob_a, A, resolver(provider))
        assert open_envelope(blob_o, other, resolver(provider)) == VALUE, (
            "destroying one key's KEK leaves the others"
        )
    else:
        assert open_envelope(blob_a, A, resolver(provider)) == VALUE
