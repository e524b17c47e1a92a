"""Room kept on the audit volume for the moment it fills up (finding K9).

Beside the log, a file of ``RESERVE_BYTES`` allocated blocks. When a record does not fit
(ENOSPC), the reserve is deleted and the record written into the room it leaves: the
log goes on long enough for the operator to say so (the log's error, the metric
``keykeeper_audit_reserve_released``) and for an operator of the cluster to act, instead
of every action that needs its record stopping at once. Once a record fits again, the
reserve is made again (tried at most every ``RETRY`` seconds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("keykeeper.audit")

RESERVE_BYTES = 1024 * 1024  # some 3,000 records
RETRY = 30.0


class Reserve:
    def __init__(
        self,
        path: Path,
        size: int = RESERVE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path, self.size, self._clock = path, size, clock
        self.released = False
        self._tried_at: float | None = None
        self._make()

    def release(self) -> bool:
        """Delete the reserve; False if there was none to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        self.released, self._tried_at = True, self._clock()
        return True

    def restore(self) -> None:
        """After a record fitted: make the reserve again, if it was used and it is time."""
        if not self.released or (
            self._tried_at is not None and self._clock() - self._tried_at < RETRY
        ):
            return
        self._tried_at = self._clock()
        if self._make():
            log.info("audit volume %s has room again: its reserve is back", self.path.parent)

    def _make(self) -> bool:
        if self.path.exists():
            self.released = False
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return True
        except OSError:
            self.released = True
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.released = True
            return False
        os.close(fd)
        self.released = False
        return True
