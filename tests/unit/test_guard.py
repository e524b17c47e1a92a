"""The guard in front of remote providers: rate limit, breaker and data-key cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from keykeeper.crypto.envelope import Binding, WrappedKey, open_envelope, seal_envelope
from keykeeper.errors import KeyDisabled, ProviderError, ProviderUnavailable
from keykeeper.providers.base import KeyProvider
from keykeeper.providers.guard import Guarded, TokenBucket

CONTEXT = {"keykeeper.dev/uid": "u1"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Peer(KeyProvider):
    """A KMS that XORs (enough to tell calls apart) and can fail on demand."""

    provider_id = "peer"

    def __init__(self) -> None:
        self.calls = 0
        self.failure: Exception | None = None
        self.closed = False

    def current_kek_id(self) -> str:
        return "kek/1"

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        self._maybe_fail()
        return WrappedKey("kek/1", bytes(b ^ 0x5A for b in dek))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        self._maybe_fail()
        return bytes(b ^ 0x5A for b in wrapped.blob)

    def check(self) -> None:
        self._maybe_fail()

    def close(self) -> None:
        self.closed = True


def guard(peer: Peer, clock: Clock, **kw: float) -> Guarded:
    settings = {"rate": 10.0, "burst": 2, "timeout": 1.0, **kw}
    return Guarded(
        peer,
        rate=settings["rate"],
        burst=int(settings["burst"]),
        timeout=settings["timeout"],
        cache_size=int(kw.get("cache_size", 100)),
        clock=clock,
        sleep=clock.sleep,
    )


def test_the_bucket_allows_a_burst_then_paces() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1) and waits[4] == pytest.approx(0.2)
    clock.now += 10
    assert bucket.reserve() == 0.0, "tokens refill up to the burst"


def test_a_version_is_unwrapped_once_while_cached_and_a_wrap_seeds_it() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock)
    binding = Binding("ns", "k", "u1", 1)
    blob = seal_envelope(b"value", binding, guarded)
    assert peer.calls == 1  # the wrap
    for _ in range(5):
        assert open_envelope(blob, binding, lambda _: guarded) == b"value"
    assert peer.calls == 1, "the wrap seeded the cache: no unwrap at all"
    assert guarded.calls["unwrap-cached"] == 5


def test_a_cached_key_is_still_bound_to_its_context() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock)
    wrapped = guarded.wrap(b"d" * 32, CONTEXT)
    guarded.unwrap(wrapped, {"keykeeper.dev/uid": "u2"})  # another context: a real call
    assert peer.calls == 2


def test_evicted_keys_are_wiped() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock, cache_size=2, rate=1000, burst=100)
    wrapped = [guarded.wrap(bytes([n]) * 32, CONTEXT) for n in range(3)]
    buffers = list(guarded._cache.values())
    assert len(buffers) == 2
    guarded.close()
    assert all(buf == bytearray(32) for buf in buffers), "closing wipes what is cached"
    assert peer.closed
    guarded.unwrap(wrapped[0], CONTEXT)
    assert peer.calls == 4


def test_an_exhausted_rate_limit_refuses_rather_than_holding_the_thread() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock, rate=1.0, burst=1, timeout=0.5)
    guarded.check()
    with pytest.raises(ProviderUnavailable, match="rate limit"):
        guarded.check()
    assert peer.calls == 1 and clock.slept == []
    clock.now += 1.0
    guarded.check()
    assert peer.calls == 2


def test_calls_pace_within_the_timeout() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock, rate=10.0, burst=1, timeout=1.0)
    for _ in range(4):
        guarded.check()
    assert peer.calls == 4
    assert sum(clock.slept) == pytest.approx(0.3)


class Timers:
    """The guard's probe schedule, run by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, action: Callable[[], None]) -> None:
        self.pending.append((delay, action))

    def fire(self) -> float:
        delay, action = self.pending.pop(0)
        action()
        return delay


def test_a_down_provider_refuses_at_once_is_probed_and_announces_its_recovery() -> None:
    peer, clock, timers = Peer(), Clock(), Timers()
    recovered: list[bool] = []
    guarded = Guarded(
        peer,
        rate=1000,
        burst=100,
        timeout=1.0,
        clock=clock,
        sleep=clock.sleep,
        schedule=timers,
        on_recovery=lambda: recovered.append(True),
    )
    peer.failure = ProviderUnavailable("KMS unreachable (EndpointConnectionError)")
    with pytest.raises(ProviderUnavailable):
        guarded.check()
    for _ in range(3):
        with pytest.raises(ProviderUnavailable, match=r"EndpointConnectionError.*down"):
            guarded.check()
    assert peer.calls == 1, "while down, no call reaches the peer"
    delays = [timers.fire() for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0], "probes back off, capped at 5 s"
    assert peer.calls == 6 and not recovered
    peer.failure = None
    timers.fire()
    assert recovered == [True] and timers.pending == []
    guarded.check()
    assert peer.calls == 8


def test_a_probe_that_gets_any_answer_closes_the_breaker() -> None:
    peer, clock, timers = Peer(), Clock(), Timers()
    guarded = Guarded(peer, rate=1000, burst=100, timeout=1.0, clock=clock, schedule=timers)
    peer.failure = ProviderUnavailable("hung")
    with pytest.raises(ProviderUnavailable):
        guarded.check()
    peer.failure = KeyDisabled("the KMS key kek/1 is not usable (DisabledException)")
    timers.fire()
    with pytest.raises(KeyDisabled):
        guarded.check()


def test_a_permanent_refusal_does_not_open_the_breaker() -> None:
    peer, clock = Peer(), Clock()
    guarded = guard(peer, clock, rate=1000, burst=100)
    peer.failure = KeyDisabled("the KMS key kek/1 is not usable (DisabledException)")
    for _ in range(2):
        with pytest.raises(KeyDisabled):
            guarded.check()
    assert peer.calls == 2


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [
        (1, 1.5, 2.5),
        (2, 3.0, 5.0),
        (3, 6.0, 10.0),
        (4, 11.25, 18.75),
        (50, 11.25, 18.75),
    ],
)
def test_provider_backoff_doubles_with_jitter_up_to_a_cap(
    failures: int, low: float, high: float
) -> None:
    from keykeeper.controllers.apikey.run import provider_backoff

    assert provider_backoff(failures, rand=lambda: 0.0) == pytest.approx(low)
    assert provider_backoff(failures, rand=lambda: 1.0) == pytest.approx(high)


class Malicious(Peer):
    """A KMS (or a man in the middle) answering with what no real one would."""

    def __init__(self, kek_id: str = "kek/1", blob: bytes | None = None, dek: bytes | None = None):
        super().__init__()
        self.kek_id, self.blob, self.dek = kek_id, blob, dek

    def current_kek_id(self) -> str:
        return self.kek_id

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        return WrappedKey(self.kek_id, self.blob if self.blob is not None else dek)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        return self.dek if self.dek is not None else wrapped.blob


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(Malicious(kek_id="kek\n\x1b[31mforged log line"), id="control-characters"),
        pytest.param(Malicious(kek_id="k" * 5000), id="a-huge-key-id"),
        pytest.param(Malicious(kek_id=""), id="an-empty-key-id"),
        pytest.param(Malicious(blob=b"x" * (2 * 1024 * 1024)), id="a-huge-wrapped-key"),
        pytest.param(Malicious(blob=b""), id="an-empty-wrapped-key"),
    ],
)
def test_a_malformed_answer_to_a_wrap_is_refused_and_never_echoed(peer: Malicious) -> None:
    guarded = guard(peer, Clock())
    binding = Binding("ns", "k", "u1", 1)
    with pytest.raises(ProviderError, match="malformed") as refused:
        seal_envelope(b"value", binding, guarded)
    assert "forged" not in str(refused.value) and len(str(refused.value)) < 300
    assert not isinstance(refused.value, ProviderUnavailable), "not a transient failure"


def test_a_malformed_key_id_is_refused_on_its_own_too() -> None:
    with pytest.raises(ProviderError, match="malformed"):
        guard(Malicious(kek_id="a\nb"), Clock()).current_kek_id()


@pytest.mark.parametrize("dek", [b"", b"short", b"x" * 33, b"x" * 4096])
def test_an_unwrapped_key_of_the_wrong_size_is_refused(dek: bytes) -> None:
    honest = guard(Peer(), Clock())
    binding = Binding("ns", "k", "u1", 1)
    envelope = seal_envelope(b"value", binding, honest)
    lying = guard(Malicious(dek=dek), Clock())
    with pytest.raises(ProviderError, match="malformed"):
        open_envelope(envelope, binding, lambda _: lying)
