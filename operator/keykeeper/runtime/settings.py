"""The operator's settings, from flags and environment variables (flags win)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from keykeeper.api.durations import parse_duration
from keykeeper.api.labels import is_label_key
from keykeeper.audit.segments import KEPT, SEGMENT_BYTES

LOG_FORMATS = ("json", "plain", "full")
METRICS_AUTH = ("none", "kubernetes")  # /metrics open, or a TokenReview + RBAC
OWNER_FROM = ("apikey", "namespace")  # whose owner label the per-key series carry
MAX_WORKERS = 256
MIN_SEGMENT_BYTES = 64 * 1024  # an audit segment holds more than a few records


@dataclass(frozen=True)
class Settings:
    namespace: str = "keykeeper-system"
    master_key_secret: str = "keykeeper-master-key"  # noqa: S105 - a Secret name
    passphrase_file: Path | None = None
    fips: bool = False
    audit_log: Path = Path("/var/lib/keykeeper/audit.jsonl")
    log_format: str = "json"
    http_address: str = ":8080"  # /healthz, /readyz, /metrics; "" serves nothing
    leader_election: bool = False  # on in the chart: only the Lease holder writes
    audit_stdout: bool = False  # each audit record also as a JSON line on stdout
    metrics_auth: str = "none"  # "kubernetes": /metrics for tokens RBAC lets get it
    # one series per key for its expiry and its rotation due, labelled namespace, name and
    # owner (the value of this label on the ApiKey); off for very large installs
    per_key_metrics: bool = True
    owner_label: str = "keykeeper.dev/owner"
    # "namespace": the label on the key's Namespace, which a tenant with namespace rights
    # cannot edit, so no tenant routes an alert to another team
    owner_from: str = "apikey"
    argo_rollouts: bool = False  # restart opted-in Argo Rollouts too (deploy/argo-rollouts.yaml)
    audit_segment_bytes: int = SEGMENT_BYTES  # the audit file is closed past this size
    audit_segments_kept: int = KEPT  # closed audit segments kept (0: all)
    workers: int = 16  # keys reconciled at once: each mostly waits on the API or a KMS
    instance: str = "keykeeper"
    sealing_renewal: timedelta | None = timedelta(days=30)  # None: never
    # retired sealing keys stop opening this long after retirement (None: never)
    sealing_cutoff: timedelta | None = timedelta(days=365)
    sealing_check: float = 60.0  # seconds between checks of the sealing keys and ConfigMap
    # until when unbound kk-sealed-v1 values still open (a migration window); None: never
    sealed_v1_until: datetime | None = None

    def __post_init__(self) -> None:
        """Bad settings stop the start with what is wrong, never a silent default."""
        if self.log_format not in LOG_FORMATS:
            raise ValueError(
                f"log format {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}"
            )
        if self.metrics_auth not in METRICS_AUTH:
            raise ValueError(
                f"metrics auth {self.metrics_auth!r} is not one of {', '.join(METRICS_AUTH)}"
            )
        if self.owner_from not in OWNER_FROM:
            shown = ", ".join(OWNER_FROM)
            raise ValueError(f"owner from {self.owner_from!r} is not one of {shown}")
        if not is_label_key(self.owner_label):
            raise ValueError(f"the owner label {self.owner_label!r} is not a label key")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1 to {MAX_WORKERS}, not {self.workers}")
        if self.audit_segment_bytes < MIN_SEGMENT_BYTES or self.audit_segments_kept < 0:
            raise ValueError(
                f"audit segments must be at least {MIN_SEGMENT_BYTES} bytes, and a count "
                f"of them kept 0 (all) or more: {self.audit_segment_bytes}, "
                f"{self.audit_segments_kept}"
            )
        if self.sealing_check <= 0:
            raise ValueError(f"the sealing check interval must be positive: {self.sealing_check}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        default = cls()
        passphrase = env.get("KEYKEEPER_PASSPHRASE_FILE")
        return cls(
            namespace=env.get("KEYKEEPER_NAMESPACE", default.namespace),
            master_key_secret=env.get("KEYKEEPER_MASTER_KEY_SECRET", default.master_key_secret),
            passphrase_file=Path(passphrase) if passphrase else None,
            fips=_flag(env.get("KEYKEEPER_FIPS", "false")),
            audit_log=Path(env.get("KEYKEEPER_AUDIT_LOG", str(default.audit_log))),
            log_format=env.get("KEYKEEPER_LOG_FORMAT", default.log_format),
            http_address=env.get("KEYKEEPER_HTTP_ADDRESS", default.http_address),
            leader_election=_flag(env.get("KEYKEEPER_LEADER_ELECTION", "false")),
            audit_stdout=_flag(env.get("KEYKEEPER_AUDIT_STDOUT", "false")),
            metrics_auth=env.get("KEYKEEPER_METRICS_AUTH", default.metrics_auth),
            per_key_metrics=_flag(env.get("KEYKEEPER_PER_KEY_METRICS", "true")),
            owner_label=env.get("KEYKEEPER_OWNER_LABEL", default.owner_label),
            owner_from=env.get("KEYKEEPER_OWNER_FROM", default.owner_from),
            argo_rollouts=_flag(env.get("KEYKEEPER_ARGO_ROLLOUTS", "false")),
            audit_segment_bytes=_integer(
                "KEYKEEPER_AUDIT_SEGMENT_BYTES",
                env.get("KEYKEEPER_AUDIT_SEGMENT_BYTES"),
                default.audit_segment_bytes,
            ),
            audit_segments_kept=_integer(
                "KEYKEEPER_AUDIT_SEGMENTS_KEPT",
                env.get("KEYKEEPER_AUDIT_SEGMENTS_KEPT"),
                default.audit_segments_kept,
            ),
            workers=_integer("KEYKEEPER_WORKERS", env.get("KEYKEEPER_WORKERS"), default.workers),
            instance=env.get("POD_NAME", env.get("HOSTNAME", default.instance)),
            sealing_renewal=_duration(env.get("KEYKEEPER_SEALING_RENEWAL", "30d")),
            sealing_cutoff=_duration(env.get("KEYKEEPER_SEALING_CUTOFF", "365d")),
            sealing_check=float(env.get("KEYKEEPER_SEALING_CHECK", str(default.sealing_check))),
            sealed_v1_until=_until(env.get("KEYKEEPER_SEALED_V1_UNTIL", "")),
        )


def _integer(name: str, text: str | None, default: int) -> int:
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} is not a whole number: {text!r}") from None


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", ""):
        raise ValueError(f"not a boolean: {text!r} (true or false)")
    return value in ("true", "1")


def _until(text: str) -> datetime | None:
    """An end date (2027-06-30) or RFC 3339 time; empty: no window at all."""
    if not text.strip():
        return None
    try:
        found = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date: {text!r} (for example 2027-06-30)") from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _duration(text: str) -> timedelta | None:
    """A duration such as 30d or 12h; "0" (or empty) means never."""
    if text.strip() in ("", "0"):
        return None
    return parse_duration(text.strip())
