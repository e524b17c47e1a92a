"""The operator's settings, from flags and environment variables (flags win)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    namespace: str = "keykeeper-system"
    master_key_secret: str = "keykeeper-master-key"  # noqa: S105 - a Secret name
    passphrase_file: Path | None = None
    fips: bool = False
    audit_log: Path = Path("/var/lib/keykeeper/audit.jsonl")
    log_format: str = "json"
    liveness: str = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 0
    workers: int = 4
    instance: str = "keykeeper"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        default = cls()
        passphrase = env.get("KEYKEEPER_PASSPHRASE_FILE")
        return cls(
            namespace=env.get("KEYKEEPER_NAMESPACE", default.namespace),
            master_key_secret=env.get("KEYKEEPER_MASTER_KEY_SECRET", default.master_key_secret),
            passphrase_file=Path(passphrase) if passphrase else None,
            fips=env.get("KEYKEEPER_FIPS", "false").lower() == "true",
            audit_log=Path(env.get("KEYKEEPER_AUDIT_LOG", str(default.audit_log))),
            log_format=env.get("KEYKEEPER_LOG_FORMAT", default.log_format),
            liveness=env.get("KEYKEEPER_LIVENESS", default.liveness),
            metrics_port=int(env.get("KEYKEEPER_METRICS_PORT", "0")),
            workers=int(env.get("KEYKEEPER_WORKERS", str(default.workers))),
            instance=env.get("POD_NAME", env.get("HOSTNAME", default.instance)),
        )
