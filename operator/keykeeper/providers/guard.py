"""What stands between the operator and every remote key provider: a rate limit, a
short circuit breaker, and a cache of unwrapped data keys.

* **Rate limit.** A token bucket per provider instance (``rate`` calls per second,
  ``burst`` at once), shared by every key under the policy, so a thousand keys at
  start-up queue instead of stampeding the KMS. A call that would wait longer than
  the provider's ``timeout`` is refused at once as ``ProviderUnavailable``: the
  reconcile retries later and its worker thread is not held.
* **Breaker.** After a transient failure the provider is considered down: calls fail
  at once with the cause instead of each waiting out a timeout, so a dead or hung KMS
  holds no reconcile worker and enforcement (revoke, suspend, de-authorization) is
  never queued behind it. While down, the guard itself probes the KMS (``check``) on a
  cooldown that doubles from 1 s to 5 s; the first probe that succeeds closes the
  breaker and calls ``on_recovery``, so the keys that failed are retried at once
  instead of waiting out their own backoff.
* **Threads.** Its calls run on threads of its own, at most 4 at once and 4 waiting;
  more are refused at once as ``ProviderUnavailable`` (``providers.threads``), so a
  slow provider holds neither the shared pool nor more than a few reconcile workers.
* **Answers checked.** A KEK id must be printable ASCII of 1 to 512 characters, a
  wrapped key 1 byte to the envelope's bound, an unwrapped data key 32 bytes; anything
  else is a ``ProviderError`` that echoes none of it (a malicious or broken KMS cannot
  forge log lines or bloat a store).
* **Data-key cache.** An unwrapped data key is kept, bounded (LRU), keyed by the KEK id,
  the wrapped bytes and the context, so a version is unwrapped at most once while it
  stays cached; a wrap seeds it (a version just made is projected without a Decrypt).
  Evicted and closed entries are overwritten with zeros. Python's ``bytes`` handed to
  the caller cannot be wiped; only the cache's own copy is.

Counts of calls by operation (``calls``) feed the benchmark and the metrics.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from keykeeper.api.provider_options import Capability
from keykeeper.crypto.envelope import DEK_BYTES, MAX_WRAPPED, WrappedKey
from keykeeper.errors import KeykeeperError, ProviderError, ProviderUnavailable
from keykeeper.providers.base import KeyProvider, encode_context
from keykeeper.providers.threads import BoundedExecutor

T = TypeVar("T")
log = logging.getLogger("keykeeper.providers.guard")

DEK_CACHE = 10_000  # entries; a DEK and its key are under 200 bytes
MAX_KEK_ID_SHOWN = 512
_KEK_ID = re.compile(rf"[\x21-\x7e](?:[\x20-\x7e]{{0,{MAX_KEK_ID_SHOWN - 2}}}[\x21-\x7e])?")


class CallObserver(Protocol):
    """Who counts the guard's calls (the runtime's metrics): injected, so the providers
    layer knows nothing of Prometheus. A refused call is a failure that took no time."""

    def called(self, provider: str, operation: str) -> None: ...

    def failed(self, provider: str, operation: str) -> None: ...

    def took(self, provider: str, operation: str, seconds: float) -> None: ...


class Unobserved:
    """The observer of a guard nobody counts (tests, the CLI)."""

    def called(self, provider: str, operation: str) -> None:
        pass

    def failed(self, provider: str, operation: str) -> None:
        pass

    def took(self, provider: str, operation: str, seconds: float) -> None:
        pass


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; how long to wait before using it (0: at once)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self) -> None:
        with self._lock:
            self._tokens = min(self.burst, self._tokens + 1.0)


class Guarded(KeyProvider):
    """``inner`` behind a rate limit, a breaker and a data-key cache."""

    def __init__(
        self,
        inner: KeyProvider,
        *,
        rate: float,
        burst: int,
        timeout: float,
        cooldown: float = 1.0,
        max_cooldown: float = 5.0,
        cache_size: int = DEK_CACHE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        schedule: Callable[[float, Callable[[], None]], None] | None = None,
        on_recovery: Callable[[], None] | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.inner = inner
        self._observer: CallObserver = observer or Unobserved()
        self.provider_id = inner.provider_id  # type: ignore[misc]
        self._bucket = TokenBucket(rate, burst, clock)
        self._timeout, self._cooldown, self._max_cooldown = timeout, cooldown, max_cooldown
        self._clock, self._sleep = clock, sleep
        # while down: why, and the cooldown before the next probe
        self._down: tuple[str, float] | None = None
        self._schedule = schedule or _timer
        self.on_recovery = on_recovery
        self._cache: OrderedDict[bytes, bytearray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._executor = BoundedExecutor(str(self.provider_id))

    @property
    def down(self) -> bool:
        """The breaker is open: calls fail at once while the KMS is probed."""
        return self._down is not None

    @property
    def executor(self) -> BoundedExecutor:
        """Its own threads, bounded (``providers.threads``): a slow KMS holds only these."""
        return self._executor

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities

    def current_kek_id(self) -> str:
        return _checked_kek_id(self._call("current_kek_id", self.inner.current_kek_id))

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        wrapped = self._call("wrap", lambda: self.inner.wrap(dek, context))
        _checked_kek_id(wrapped.kek_id)
        if not 1 <= len(wrapped.blob) <= MAX_WRAPPED:
            raise ProviderError(
                f"the {self.provider_id} provider returned a malformed wrapped key "
                f"({len(wrapped.blob)} bytes)"
            )
        self._remember(_cache_key(wrapped, context), dek)
        return wrapped

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        key = _cache_key(wrapped, context)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                self.calls["unwrap-cached"] += 1
                return bytes(cached)
        dek = self._call("unwrap", lambda: self.inner.unwrap(wrapped, context))
        if len(dek) != DEK_BYTES:
            raise ProviderError(
                f"the {self.provider_id} provider returned a malformed data key "
                f"({len(dek)} bytes, not {DEK_BYTES})"
            )
        self._remember(key, dek)
        return dek

    def check(self) -> None:
        self._call("check", self.inner.check)

    def destroy_kek(self, kek_id: str) -> bool:
        self.forget(kek_id)
        return self._call("destroy_kek", lambda: self.inner.destroy_kek(kek_id))

    def forget(self, kek_id: str | None = None) -> None:
        """Wipe cached data keys (of one KEK, or all)."""
        prefix = hashlib.sha256(kek_id.encode()).digest()[:8] if kek_id else b""
        with self._lock:
            for key in [k for k in self._cache if k.startswith(prefix)]:
                _wipe(self._cache.pop(key))

    def close(self) -> None:
        self.forget()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.inner.close()

    def _remember(self, key: bytes, dek: bytes) -> None:
        with self._lock:
            old = self._cache.pop(key, None)
            if old is not None:
                _wipe(old)
            self._cache[key] = bytearray(dek)
            while len(self._cache) > self._cache_size:
                _wipe(self._cache.popitem(last=False)[1])

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        labels = (self.provider_id, operation)
        observer = self._observer
        down = self._down
        if down is not None:
            self.calls[f"{operation}-refused"] += 1
            observer.failed(*labels)
            raise ProviderUnavailable(f"{down[0]} (the provider is down; probing it)")
        wait = self._bucket.reserve()
        if wait > self._timeout:
            self._bucket.give_back()
            self.calls[f"{operation}-throttled"] += 1
            observer.failed(*labels)
            raise ProviderUnavailable(
                f"the {self.provider_id} provider's rate limit ({self._bucket.rate:g} calls/s) "
                "is exhausted; retrying later"
            )
        if wait > 0:
            self._sleep(wait)
        self.calls[operation] += 1
        observer.called(*labels)
        started = time.monotonic()
        try:
            return call()
        except ProviderUnavailable as exc:
            observer.failed(*labels)
            self._trip(str(exc))
            raise
        except Exception:
            observer.failed(*labels)
            raise
        finally:
            observer.took(*labels, time.monotonic() - started)

    def _trip(self, why: str) -> None:
        with self._lock:
            if self._down is not None:
                return  # already down, and a probe is scheduled
            self._down = (why, self._cooldown)
        self._schedule(self._cooldown, self._probe)

    def _probe(self) -> None:
        """One ``check`` of the KMS while it is down: closes the breaker, or waits longer."""
        self.calls["probe"] += 1
        try:
            self.inner.check()
        except KeykeeperError as exc:
            if exc.transient:
                self._still_down(str(exc))
                return
            # it answered (a disabled key, a refused identity): reachable again
        except Exception as exc:  # a bug must not leave the breaker open for good
            log.warning("probing the %s provider: %s", self.provider_id, type(exc).__name__)
            self._still_down(f"probe failed: {type(exc).__name__}")
            return
        with self._lock:
            self._down = None
        if self.on_recovery is not None:
            self.on_recovery()

    def _still_down(self, why: str) -> None:
        with self._lock:
            cooldown = min((self._down[1] if self._down else 0) * 2, self._max_cooldown)
            self._down = (why, max(cooldown, self._cooldown))
        self._schedule(self._down[1], self._probe)


def _checked_kek_id(kek_id: str) -> str:
    """A KEK id as a provider returned it, only if it is one: it reaches status, Events,
    logs and the envelope, so control characters, or a huge or empty id, are refused."""
    if _KEK_ID.fullmatch(kek_id) is None:
        raise ProviderError(
            f"the provider returned a malformed KEK id ({len(kek_id)} characters; "
            f"printable ASCII, 1 to {MAX_KEK_ID_SHOWN}, expected)"
        )
    return kek_id


def _timer(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


def _cache_key(wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
    kek = hashlib.sha256(wrapped.kek_id.encode()).digest()[:8]
    rest = hashlib.sha256(encode_context(wrapped.kek_id, context) + wrapped.blob).digest()
    return kek + rest


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))
