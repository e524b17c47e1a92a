"""The process's memory given back: glibc's allocator told not to hoard (K3).

A restart reads every ApiKey; with large ones the responses are megabytes. glibc's
allocator raises its mmap threshold after such a buffer is freed (up to 32 MiB), so the
next ones come from the heap, and a heap with one live object near its top is never
trimmed: the process stayed at its start-up peak. A fixed threshold keeps large
buffers in mmap (returned when freed), fewer arenas keep the worker threads' garbage
in fewer places, and ``release`` collects and trims after a bulk (the start-up list).
On a libc without these calls (musl, macOS) nothing is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
THRESHOLD = 128 * 1024  # glibc's own initial value, no longer raised by itself
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError, TypeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return None


def tune() -> None:
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return
    libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD)
    libc.mallopt(M_ARENA_MAX, ARENAS)


def release() -> None:
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
