"""K9: a full audit volume has a reserve to give, and a record never half-written.

On a real tmpfs, filled to the last block: the next record takes the reserve's room
instead of failing (the operator says so in its log and the metric), the records
after it go on until that room is gone too, and what is in the file still verifies,
so a record that did not fit left nothing of itself behind. Once there is room again
the reserve is made again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keykeeper.audit import reserve as reserve_module
from keykeeper.audit.chain import verify
from keykeeper.audit.log import AuditLog
from keykeeper.errors import AuditWriteError

KEY = b"a" * 32


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own (the machine runs the tests as root, as CI does)."""
    where = tmp_path / "volume"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        for size in (256, 16, 1):  # the last bytes of the last block too
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_a_full_volume_gives_its_reserve_and_never_keeps_half_a_record(
    volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reserve_module, "RETRY", 0.0)
    log = AuditLog(volume / "audit.jsonl", KEY)
    assert (volume / "audit.jsonl.reserve").stat().st_size == reserve_module.RESERVE_BYTES
    log.append("Created", namespace="a", name="k", detail="before the volume filled")
    fill(volume / "filler")
    written = 1
    while not log.reserve.released:  # the log's own last page fills first (tmpfs)
        log.append("Projected", namespace="a", name="k", detail="x" * 400)
        written += 1
        assert written < 100, "the volume never filled"
    assert not (volume / "audit.jsonl.reserve").exists()
    assert log.failures == 0, "the record that found the volume full was written"
    refused: AuditWriteError | None = None
    while refused is None:  # the reserve's room, record by record, until it is gone too
        try:
            log.append("Projected", namespace="a", name="k", detail="x" * 400)
            written += 1
        except AuditWriteError as exc:
            refused = exc
    assert refused is not None  # ENOSPC, or a short write (then truncated away)
    assert written > 1000, "the reserve held a good many records"
    assert log.failures == 1
    verdict = verify((volume / "audit.jsonl").read_bytes().splitlines(), KEY)
    assert verdict.ok and verdict.records == written, verdict

    os.unlink(volume / "filler")
    log.append("Projected", namespace="a", name="k", detail="room again")
    assert not log.reserve.released and (volume / "audit.jsonl.reserve").exists()
