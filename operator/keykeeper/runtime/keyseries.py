"""The series that name a key (``namespace``, ``name``, ``owner``): when its value
expires and when its rotation is due, one each at most, for keys that have one; and
whether each key provider is up. ``metrics`` exports them with the rest.

``namespace`` and ``name`` are what the apiserver admits as names; ``owner`` is the
value of the owner label (``KEYKEEPER_OWNER_LABEL``) as the apiserver admits label values
(``api.labels.label_value``); ``state`` and ``provider`` are closed sets; ``key_ref`` is
a KeyPolicy's ``kms.keyRef``, written by the platform team (at most 64: the provider
cache's bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from prometheus_client.core import GaugeMetricFamily, Metric

from keykeeper.runtime.families import gauge


class KeySeries(NamedTuple):
    """One key, for its per-key series."""

    namespace: str
    name: str
    owner: str
    expiry: str  # "", Expiring or Expired
    expires_at: float | None  # epoch seconds
    rotation_due: float | None


EXPIRY_STATES = {"": "ok", "Expiring": "expiring", "Expired": "expired"}


def families(per_key: Iterable[KeySeries] | None) -> Iterator[Metric]:
    yield gauge(
        "keykeeper_per_key_series",
        "1 while the per-key series are exported (the alerts fall back to counts when 0).",
        float(per_key is not None),
    )
    expiry = GaugeMetricFamily(
        "keykeeper_key_expiry_timestamp_seconds",
        "When each ApiKey's value expires (unix time), with the state its conditions say "
        "(ok, expiring: within its policy's alerts.expiringWithin, expired).",
        labels=["namespace", "name", "owner", "state"],
    )
    due = GaugeMetricFamily(
        "keykeeper_key_rotation_due_timestamp_seconds",
        "When each ApiKey's next scheduled rotation is due (unix time).",
        labels=["namespace", "name", "owner"],
    )
    for key in per_key or ():
        if key.expires_at is not None:
            state = EXPIRY_STATES.get(key.expiry, "ok")
            expiry.add_metric([key.namespace, key.name, key.owner, state], key.expires_at)
        if key.rotation_due is not None:
            due.add_metric([key.namespace, key.name, key.owner], key.rotation_due)
    yield expiry
    yield due


def providers(down: dict[tuple[str, str], bool]) -> Metric:
    up = GaugeMetricFamily(
        "keykeeper_provider_up",
        "0 while a key provider (KMS or HSM) is considered down: its breaker is open after "
        "a call failed as unavailable, and the operator probes it until it answers.",
        labels=["provider", "key_ref"],
    )
    for (provider, key_ref), is_down in sorted(down.items()):
        up.add_metric([provider, key_ref], 0.0 if is_down else 1.0)
    return up
