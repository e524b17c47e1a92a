"""Real AWS KMS peers as local processes: moto's server, and local-kms built from its
Go module (github.com/nsmithuk/local-kms, cached like the control plane).

Both are separate processes reached over HTTP by the unmodified boto3 client. local-kms
keeps its keys in a data directory, so it can be killed and started again with every
key intact: the outage tests kill it for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_KMS_MODULE = "github.com/nsmithuk/local-kms"
LOCAL_KMS_VERSION = "v0.0.0-20260228092603-2a5e92d09ab6"
ACCOUNT = "111122223333"
REGION = "eu-west-1"
CREDENTIALS = {"access-key-id": "AKIDKEYKEEPERTEST", "secret-access-key": "not-a-real-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Peer:
    """One running KMS peer process; ``stop``/``start`` simulate an outage."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Peer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, host=self.host)
        return self

    def kill(self) -> None:
        """SIGKILL: the peer is gone, as a crashed KMS endpoint would be."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the peer still holds its connections and answers nothing, so every
        call waits out its timeout (a hung KMS endpoint)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "kms",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["access-key-id"],
            aws_secret_access_key=CREDENTIALS["secret-access-key"],
        )

    def create_key(self, alias: str | None = None) -> str:
        """A symmetric key (and its alias); returns its ARN."""
        kms = self.client()
        arn = str(kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"])
        if alias:
            kms.create_alias(AliasName=alias, TargetKeyId=arn)
        return arn


def moto(directory: Path, host: str = "127.0.0.1") -> Peer:
    """moto's server (``moto[server]``) on a free port (of ``host``: a node's Pods
    reach it at the host's address)."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    env = {"MOTO_ACCOUNT_ID": ACCOUNT}
    return Peer("moto", argv, env, port, directory / "moto.log", host=host)


def local_kms_binary() -> Path:
    """Build local-kms from the Go module proxy once per machine; the cached path."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = Path(os.environ.get("KEYKEEPER_CACHE") or xdg / "keykeeper")
    target = cache / "local-kms" / LOCAL_KMS_VERSION
    binary = target / "local-kms"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Go is needed to build local-kms (the AWS outage tests' peer)")
    building = target.with_name(f"{LOCAL_KMS_VERSION}.tmp.{os.getpid()}")
    building.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"{LOCAL_KMS_MODULE}@{LOCAL_KMS_VERSION}"],
        env={**os.environ, "GOBIN": str(building), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        check=True,
        cwd=building,
    )
    if target.exists():  # another build finished first
        shutil.rmtree(building)
    else:
        building.replace(target)
    print(f"built local-kms into {binary}", file=sys.stderr)
    return binary


def local_kms(directory: Path) -> Peer:
    """local-kms on a free port, its keys kept in ``directory/data`` across restarts."""
    port = free_port()
    data = directory / "local-kms-data"
    data.mkdir(parents=True, exist_ok=True)
    env = {
        "PORT": str(port),
        "KMS_ACCOUNT_ID": ACCOUNT,
        "KMS_REGION": REGION,
        "KMS_DATA_PATH": str(data),
    }
    return Peer("local-kms", [str(local_kms_binary())], env, port, directory / "local-kms.log")


class SlowProxy:
    """A TCP proxy in front of a peer that holds every request ``delay`` seconds before
    passing it on: a KMS that answers, slowly (not one that fails)."""

    def __init__(self, target: int, delay: float) -> None:
        self.target, self.delay = target, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the peer is gone: so is this connection
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: Any, sink: Any, slow: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if slow:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()
