"""A node whose test run was killed leaves its containers running (containerd's shims
outlive it by design); the next node reaps them, and touches nothing of a node whose
owner is alive. Real runc, a real container of the pause binary, no cluster."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from devtools.node import binaries, reaper, runc

pytestmark = pytest.mark.e2e
DEAD = 4194303  # above the kernel's pid_max default: no process has it


def _container(workdir: Path, name: str) -> int:
    """A detached container of the pause binary under the node's runc root, as the
    shim would have left it; returns its init's PID."""
    bundle = workdir / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "rootfs" / "pause").write_bytes((binaries() / "pause").read_bytes())
    (bundle / "rootfs" / "pause").chmod(0o755)
    subprocess.run([runc(), "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(args=["/pause"], terminal=False)
    (bundle / "config.json").write_text(json.dumps(spec))
    root = workdir / "runc" / "k8s.io"  # the shim's: <Root>/<containerd namespace>
    subprocess.run([runc(), "--root", str(root), "run", "--detach", name], cwd=bundle, check=True)
    state = subprocess.run(
        [runc(), "--root", str(root), "state", name], capture_output=True, text=True, check=True
    )
    return int(json.loads(state.stdout)["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "State:\tZ" not in status


def test_a_killed_runs_containers_are_reaped_and_a_live_one_is_kept(tmp_path: Path) -> None:
    dead, live = tmp_path / "dead-node", tmp_path / "live-node"
    pids = {"dead": _container(dead, f"reaper-dead-{os.getpid()}")}
    pids["live"] = _container(live, f"reaper-live-{os.getpid()}")
    folder = reaper.registry()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(DEAD)).write_text(f"{dead}\n")
    reaper.register(live)  # owned by this process: alive
    try:
        assert reaper.reap(runc()) == [dead]
        deadline = time.monotonic() + 10
        while _alive(pids["dead"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pids["dead"]), "the dead run's container is gone"
        assert not dead.exists(), "and its folder"
        assert not (folder / str(DEAD)).exists()
        assert _alive(pids["live"]), "a live node's container is not touched"
        assert live.exists()
    finally:
        reaper.clean(live, runc())
        reaper.unregister(live)
    assert not _alive(pids["live"])
