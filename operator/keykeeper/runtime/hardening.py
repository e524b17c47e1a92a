"""Process hardening at start: key material must not leave through a core dump.

The operator holds the master key, data keys and plaintext values in memory. A crash
that writes a core file, or a same-user process attaching with ptrace or reading
``/proc/<pid>/mem``, would carry them out. So before anything is loaded the core size
limit is set to 0 and the process marks itself non-dumpable (``PR_SET_DUMPABLE`` = 0),
which also makes ``/proc/<pid>`` root-owned and refuses ptrace from the same user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource

log = logging.getLogger("keykeeper.hardening")

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result: int = libc.prctl(option, value, 0, 0, 0)
    return result


def harden_process() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        log.warning("could not mark the process non-dumpable (prctl PR_SET_DUMPABLE)")


def is_hardened() -> bool:
    return resource.getrlimit(resource.RLIMIT_CORE) == (0, 0) and _prctl(PR_GET_DUMPABLE) == 0
