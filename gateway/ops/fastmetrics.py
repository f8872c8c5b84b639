"""Counters and histograms cheap enough for every statement, exposed via prometheus_client.

prometheus_client's own instruments take a lock per increment and resolve
labels on each call: a few microseconds each, several per statement. These
are plain ints and floats updated from the event loop only (one thread, so
no lock), turned into metric families when Prometheus scrapes. The scrape
runs in a worker thread; it copies each dict or list in one C-level call
(atomic under the GIL) before reading it. Used by ``gateway/ops/metrics.py``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class FastCounter:
    """A counter family keyed by label-value tuples."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in dict(self.values).items():
            family.add_metric(labels, value)
        return family


class FastHistogram:
    """An unlabelled histogram with fixed buckets (``le`` is inclusive, as in Prometheus)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> Metric:
        counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), float(cumulative)))
        return HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                     sum_value=total)


class FastCollector:
    """Registers a set of fast instruments with a prometheus_client registry."""

    def __init__(self, *instruments: FastCounter | FastHistogram) -> None:
        self.instruments = instruments

    def collect(self) -> Iterator[Metric]:
        for instrument in self.instruments:
            yield instrument.family()
