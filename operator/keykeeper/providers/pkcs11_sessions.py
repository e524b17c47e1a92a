"""PKCS#11 plumbing for the pkcs11 provider: loading a module once, one call lock per
module, and a bounded pool of logged-in sessions.

python-pkcs11 initialises a module with C_Initialize(NULL), which by the PKCS#11
standard promises the module that no two threads call it at once (SoftHSM2 then takes
no locks of its own, and concurrent calls fail with CKR_GENERAL_ERROR). So every call
into one module holds that module's lock. Sessions are still pooled, which saves an
open and a login per operation; a session that failed is dropped, not reused.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pkcs11
from pkcs11 import exceptions as p11err
from pkcs11._pkcs11 import lib as Library  # noqa: N812

from keykeeper.errors import InvalidProviderConfig, ProviderUnavailable

LIBS: dict[str, Library] = {}
LIBS_LOCK = threading.Lock()
# Errors that say the token or the session is gone for now, not that the data is bad.
TRANSIENT = (
    p11err.DeviceError,
    p11err.DeviceRemoved,
    p11err.DeviceMemory,
    p11err.SessionClosed,
    p11err.SessionHandleInvalid,
    p11err.TokenNotPresent,
    p11err.TokenNotRecognised,
    p11err.FunctionFailed,
    p11err.GeneralError,
)

_CALL_LOCKS: dict[str, threading.Lock] = {}


def load(module: str) -> Library:
    with LIBS_LOCK:
        if module not in LIBS:
            if not Path(module).exists():
                raise InvalidProviderConfig(f"PKCS#11 module {module} does not exist")
            LIBS[module] = pkcs11.lib(module)
            _CALL_LOCKS[module] = threading.Lock()
        return LIBS[module]


class SessionPool:
    """At most ``size`` logged-in sessions on one token, each used by one thread at a time."""

    def __init__(self, module: str, token_label: str, pin: str, size: int) -> None:
        if size < 1:
            raise InvalidProviderConfig("pool-size must be at least 1")
        self._pin = pin
        self._pool: queue.LifoQueue[pkcs11.Session] = queue.LifoQueue()
        self._opened = 0
        self._pool_size = size
        self._pool_lock = threading.Lock()
        try:
            lib = load(module)
            self._calls = _CALL_LOCKS[module]
            with self._calls:
                self._token = lib.get_token(token_label=token_label)
                self.mechanisms = self._token.slot.get_mechanisms()
        except p11err.NoSuchToken:
            raise InvalidProviderConfig(f"no PKCS#11 token labelled {token_label!r}") from None
        except TRANSIENT as exc:
            raise ProviderUnavailable(
                f"the PKCS#11 token is unavailable ({type(exc).__name__})"
            ) from None

    @contextmanager
    def session(self) -> Iterator[pkcs11.Session]:
        session = self._acquire()
        healthy = True
        try:
            with self._calls:
                yield session
        except TRANSIENT as exc:
            healthy = False
            raise ProviderUnavailable(f"the PKCS#11 token failed ({type(exc).__name__})") from None
        finally:
            if healthy:
                self._pool.put(session)
            else:
                with self._pool_lock:
                    self._opened -= 1

    def _acquire(self) -> pkcs11.Session:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            can_open = self._opened < self._pool_size
            if can_open:
                self._opened += 1
        if not can_open:
            try:
                return self._pool.get(timeout=30)
            except queue.Empty:
                raise ProviderUnavailable("no PKCS#11 session became free within 30 s") from None
        try:
            with self._calls:
                try:
                    session: pkcs11.Session = self._token.open(rw=True, user_pin=self._pin)
                except p11err.UserAlreadyLoggedIn:
                    session = self._token.open(rw=True)
                return session
        except p11err.PinIncorrect:
            with self._pool_lock:
                self._opened -= 1
            raise InvalidProviderConfig("the PKCS#11 user PIN was refused") from None
        except TRANSIENT as exc:
            with self._pool_lock:
                self._opened -= 1
            raise ProviderUnavailable(
                f"could not open a PKCS#11 session ({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        while True:
            try:
                session = self._pool.get_nowait()
                with self._calls:
                    session.close()
            except queue.Empty:
                break
            except p11err.PKCS11Error:
                continue
