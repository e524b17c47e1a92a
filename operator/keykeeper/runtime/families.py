"""Metric families made from values at scrape time: a gauge, and a histogram of many
values with cumulative buckets (what ``prometheus_client`` builds only from observations)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily


def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def histogram(
    name: str, text: str, values: Iterable[float], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    counts = [0] * (len(buckets) + 1)
    total, seen = 0.0, 0
    for value in values:
        total, seen = total + value, seen + 1
        for i, bound in enumerate(buckets):
            if value <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
    cumulative, running = [], 0
    for bound, count in zip((*buckets, float("inf")), counts, strict=True):
        running += count
        cumulative.append((_le(bound), running))
    family = HistogramMetricFamily(name, text)
    family.add_metric([], cumulative, sum_value=total)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
