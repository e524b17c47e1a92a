"""What the operator exports to Prometheus (``/metrics``), all named ``keykeeper_*``.

Counters and histograms are observed where things happen (a reconcile, a KMS call, a
projection written); what describes the cluster (keys by phase, version ages, time to
the next rotation, queue depth, leadership) is computed at scrape time from a
``Snapshot`` the running operator provides, so it can never drift from the world.

Ages and times to rotation over all keys are histograms (with the extreme as a gauge).
Beside them, unless ``KEYKEEPER_PER_KEY_METRICS=false`` (chart ``metrics.perKeySeries``),
two series per key say when its value expires and when its rotation is due, labelled
``namespace``, ``name`` and ``owner`` (the ApiKey's ``keykeeper.dev/owner`` label, or
the one the chart names), so an alert can name the key and be routed: at most two
series per key, only for keys with an expiry or a scheduled rotation (README "Alerts"
has the figures at 10,000 keys). Those three labels hold what the apiserver admits as
names and label values; every other label is a closed set (phase, provider id,
operation, error class, state, result). No label ever holds a value or a data key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from keykeeper.runtime import keyseries
from keykeeper.runtime.families import gauge, histogram
from keykeeper.runtime.keyseries import KeySeries

REGISTRY = CollectorRegistry(auto_describe=True)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HOUR, DAY = 3600.0, 86400.0
AGE_BUCKETS = (HOUR, DAY, 7 * DAY, 30 * DAY, 90 * DAY, 180 * DAY, 365 * DAY)
ROTATION_BUCKETS = (HOUR, 6 * HOUR, DAY, 7 * DAY, 30 * DAY, 90 * DAY)

RECONCILE_SECONDS = Histogram(
    "keykeeper_reconcile_duration_seconds",
    "Time one reconcile of one ApiKey took.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "keykeeper_reconcile_errors_total",
    "Reconciles that raised (and were retried with backoff), by error class.",
    ["error"],
    registry=REGISTRY,
)
PROJECTION_LAG = Histogram(
    "keykeeper_projection_lag_seconds",
    "From the watch delivering an ApiKey's new generation to its Secrets being written.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
WITHDRAWAL_SECONDS = Histogram(
    "keykeeper_withdrawal_seconds",
    "From a change that may withdraw (revoked, suspended, deleted, de-authorized) being "
    "seen to the Secrets it ends being withdrawn, by the enforcement lane.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
LOOP_STALL = Histogram(
    "keykeeper_event_loop_stall_seconds",
    "How late the event loop ran a timer due every 0.1 s: the longest piece of work it "
    "did without yielding (the Lease is renewed on this loop, within its 10 s deadline).",
    buckets=_SECONDS,
    registry=REGISTRY,
)
KMS_CALLS = Counter(
    "keykeeper_kms_requests_total",
    "Calls to a key provider (KMS or HSM), by provider and operation.",
    ["provider", "operation"],
    registry=REGISTRY,
)
KMS_SECONDS = Histogram(
    "keykeeper_kms_request_duration_seconds",
    "Time a call to a key provider took, by provider and operation.",
    ["provider", "operation"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
KMS_ERRORS = Counter(
    "keykeeper_kms_errors_total",
    "Calls to a key provider that failed or were refused (breaker, rate limit).",
    ["provider", "operation"],
    registry=REGISTRY,
)


class KmsMetrics:
    """The guard's ``CallObserver``: its calls as the three ``keykeeper_kms_*`` series."""

    def called(self, provider: str, operation: str) -> None:
        KMS_CALLS.labels(provider, operation).inc()

    def failed(self, provider: str, operation: str) -> None:
        KMS_ERRORS.labels(provider, operation).inc()

    def took(self, provider: str, operation: str, seconds: float) -> None:
        KMS_SECONDS.labels(provider, operation).observe(seconds)


@dataclass(frozen=True)
class Snapshot:
    """The cluster as the operator knows it, at one scrape."""

    phases: dict[str, int] = field(default_factory=dict)
    expiring: int = 0  # keys whose value expires soon (Expiring=True, not yet Expired)
    expired: int = 0
    unprojected: int = 0  # keys with targets they are authorized for but not written to
    version_ages: tuple[float, ...] = ()  # seconds, of each key's current version
    to_rotation: tuple[float, ...] = ()  # seconds to each scheduled rotation (<0: due)
    queue_depth: int = 0
    leader: bool = False
    leader_transitions: int = 0
    ready: bool = False
    events_dropped: int = 0  # by the Event sink's per-object rate limit
    api_throttled: int = 0  # 429s the API client waited out
    anchor_age: float = 0.0  # seconds since the audit anchor last covered the log's head
    unanchored: int = 0  # audit records written since the last anchor
    audit_failures: int = 0  # audit records that could not be written
    audit_reserve_released: bool = False  # the audit volume filled up (K9)
    restarts: dict[str, int] = field(default_factory=dict)  # rollout restarts, by result
    per_key: Iterable[KeySeries] | None = None  # None: per-key series are off
    # (provider id, keyRef) -> its breaker is open
    providers_down: dict[tuple[str, str], bool] = field(default_factory=dict)


# a snapshot taken on the event loop, for a scrape rendered on a thread (``render``)
_TAKEN: ContextVar[Snapshot | None] = ContextVar("taken", default=None)


class _World(Collector):
    def __init__(self) -> None:
        self.snapshot: Callable[[], Snapshot] = Snapshot

    def collect(self) -> Iterator[Metric]:
        now = _TAKEN.get() or self.snapshot()
        keys = GaugeMetricFamily(
            "keykeeper_keys", "ApiKeys the operator watches, by lifecycle phase.", labels=["phase"]
        )
        for phase, count in sorted(now.phases.items()):
            keys.add_metric([phase], count)
        yield keys
        yield histogram(
            "keykeeper_key_version_age_seconds",
            "Age of each ApiKey's current version.",
            now.version_ages,
            AGE_BUCKETS,
        )
        yield gauge(
            "keykeeper_key_version_age_seconds_max",
            "Age of the oldest current version.",
            max(now.version_ages, default=0.0),
        )
        yield histogram(
            "keykeeper_key_next_rotation_seconds",
            "Seconds until each scheduled rotation (negative: due).",
            now.to_rotation,
            ROTATION_BUCKETS,
        )
        yield gauge(
            "keykeeper_key_next_rotation_seconds_min",
            "Seconds until the soonest scheduled rotation (0 when none is scheduled).",
            min(now.to_rotation, default=0.0),
        )
        yield gauge(
            "keykeeper_workqueue_depth", "ApiKeys waiting to be reconciled.", now.queue_depth
        )
        yield gauge(
            "keykeeper_leader", "1 while this replica holds the leader Lease.", float(now.leader)
        )
        yield gauge(
            "keykeeper_leader_acquisitions",
            "Times this replica became the leader since it started.",
            now.leader_transitions,
        )
        yield gauge("keykeeper_ready", "1 once the replica's caches are loaded.", float(now.ready))
        yield CounterMetricFamily(
            "keykeeper_events_dropped",
            "Events not posted because their object's rate limit was spent (the audit log "
            "still has them).",
            value=now.events_dropped,
        )
        yield from _audit(now)
        yield _restarts(now)
        yield from _keys(now)
        yield from keyseries.families(now.per_key)
        yield keyseries.providers(now.providers_down)
        yield CounterMetricFamily(
            "keykeeper_api_throttled",
            "Answers 429 (API priority and fairness) from the apiserver that were waited out.",
            value=now.api_throttled,
        )


def _keys(now: Snapshot) -> Iterator[Metric]:
    yield gauge(
        "keykeeper_keys_expiring",
        "ApiKeys whose value expires within their policy's alerts.expiringWithin.",
        now.expiring,
    )
    yield gauge("keykeeper_keys_expired", "ApiKeys whose value has expired.", now.expired)
    yield gauge(
        "keykeeper_keys_not_projected",
        "ApiKeys with a target they are authorized for that could not be written (a "
        "target the policy does not authorize is not counted).",
        now.unprojected,
    )


def _restarts(now: Snapshot) -> Metric:
    restarts = CounterMetricFamily(
        "keykeeper_restarts",
        "Rollout restarts of opted-in workloads after a rotation, by result (restarted, "
        "failed, gone: the workload was deleted before its patch).",
        labels=["result"],
    )
    for result, count in sorted(now.restarts.items()):
        restarts.add_metric([result], count)
    return restarts


def _audit(now: Snapshot) -> Iterator[Metric]:
    yield gauge(
        "keykeeper_audit_anchor_age_seconds",
        "Seconds since the audit anchor in the cluster last covered the log's head "
        "(grows while anchoring fails).",
        now.anchor_age,
    )
    yield gauge(
        "keykeeper_audit_unanchored_records",
        "Audit records written since the last anchor.",
        now.unanchored,
    )
    yield CounterMetricFamily(
        "keykeeper_audit_write_failures",
        "Audit records that could not be written (their actions waited, or, for "
        "withdrawals, were taken and named in an AuditGap record later).",
        value=now.audit_failures,
    )
    yield gauge(
        "keykeeper_audit_reserve_released",
        "1 while the audit volume is full and its reserve has been used.",
        float(now.audit_reserve_released),
    )


WORLD = _World()
REGISTRY.register(WORLD)


SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def names() -> set[str]:
    """Every series name a scrape can show, labelled series not yet observed included
    (a counter's ``_total``, a histogram's ``_bucket``, ``_count`` and ``_sum``)."""
    found: set[str] = set()
    for metric in REGISTRY.collect():
        found.update(metric.name + suffix for suffix in SUFFIXES.get(metric.type, ("",)))
    return found


def render(taken: Snapshot) -> bytes:
    """A scrape from a snapshot already taken: safe on a thread while the loop goes on
    changing the world (with per-key series, 10,000 keys render in about 80 ms)."""
    token = _TAKEN.set(taken)
    try:
        return bytes(generate_latest(REGISTRY))
    finally:
        _TAKEN.reset(token)


def generate_latest_text() -> str:
    """A scrape, as text (what ``/metrics`` serves)."""
    return generate_latest(REGISTRY).decode()
