"""The keykeeper operator as a separate process, under the ServiceAccount and RBAC
that deploy/rbac.yaml ships (never as admin)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devtools.controlplane import ControlPlane, Identity
from devtools.controlplane.launcher import free_port

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "keykeeper-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:keykeeper"


class Operator:
    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        env: dict[str, str] | None = None,
        extras: tuple[str, ...] = (),
    ) -> None:
        self.plane = plane
        self.env = dict(env or {})
        self.extras = extras  # more of deploy/ to apply (an opt-in's RBAC and policy)
        self.workdir = workdir
        self.audit_log = workdir / "audit.jsonl"
        self.log = workdir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.identity: Identity | None = None
        self.starts = 0
        self.port = free_port()
        self.liveness = f"http://127.0.0.1:{self.port}/healthz"
        self.metrics = f"http://127.0.0.1:{self.port}/metrics"

    def install(self) -> None:
        self.plane.kubectl("create", "namespace", NAMESPACE, check=False)
        self.plane.kubectl("apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
        self.plane.kubectl("apply", "-f", str(REPO / "deploy" / "admission-policy.yaml"))
        for extra in self.extras:
            self.plane.kubectl("apply", "-f", str(REPO / "deploy" / extra))
        self.identity = self.plane.service_account(NAMESPACE, "keykeeper")
        self._wait_for_admission_policy()

    def _wait_for_admission_policy(self) -> None:
        """The apiserver enforces a new ValidatingAdmissionPolicy a moment after it is
        created; start nothing before it refuses what it must (a dry-run as the operator)."""
        assert self.identity is not None
        probe = (
            '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"admission-probe",'
            '"namespace":"keykeeper-system"}}'
        )

        assert self.plane.bin is not None  # the control plane is started

        def enforced() -> bool:
            assert self.plane.bin is not None
            done = subprocess.run(
                [
                    str(self.plane.bin / "kubectl"),
                    "--kubeconfig",
                    str(self.identity.kubeconfig),  # type: ignore[union-attr]
                    "create",
                    "--dry-run=server",
                    "-f",
                    "-",
                ],
                input=probe.encode(),
                capture_output=True,
                check=False,
            )
            return done.returncode != 0 and b"managed-by=keykeeper" in done.stderr

        wait_for(enforced, timeout=30, interval=0.2, what="the admission policy enforced")

    def start(self) -> None:
        assert self.identity is not None
        env = {
            **os.environ,
            "KUBECONFIG": str(self.identity.kubeconfig),
            "KEYKEEPER_AUDIT_LOG": str(self.audit_log),
            "KEYKEEPER_HTTP_ADDRESS": f"127.0.0.1:{self.port}",
            "KEYKEEPER_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "keykeeper", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        self.starts += 1

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [
            json.loads(line) for line in self.audit_log.read_text().splitlines() if line.strip()
        ]


@contextmanager
def running_operator(
    plane: ControlPlane,
    workdir: Path,
    env: dict[str, str] | None = None,
    extras: tuple[str, ...] = (),
) -> Iterator[Operator]:
    """The operator installed under the shipped RBAC and started; stopped on leaving."""
    operator = Operator(plane, workdir, env, extras)
    operator.install()
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: last={last!r}"
    )
