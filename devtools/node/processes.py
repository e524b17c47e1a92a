"""The node's daemons as child processes: each logged to its own file, in its own
process group, killed with this process (PR_SET_PDEATHSIG), stopped by name in the
order the node needs (the kubelet before containerd)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from devtools.controlplane.launcher import die_with_parent


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as log:  # the child keeps its own copy
            self._procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
            )

    def stop(self, name: str, grace: float = 20.0) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self._procs.values())

    def tail(self, lines: int = 40) -> str:
        parts = []
        for name, proc in self._procs.items():
            path = self.logs / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            parts.append(f"--- {name} ({state}; last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)
