"""The archive's Prometheus series, read when the metrics port is scraped.

Registered by ``gateway/ops/metrics.py`` (``Metrics.watch_archive``) when the
gateway archives; reads the uploader's counters, never the network.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .uploader import Archiver


class ArchiveCollector:
    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver

    def collect(self) -> Iterator[Metric]:
        archiver = self.archiver
        yield GaugeMetricFamily("phigate_archive_backlog_segments",
                                "Sealed journal segments not yet archived.",
                                value=archiver.backlog)
        oldest = archiver.oldest_waiting
        yield GaugeMetricFamily("phigate_archive_oldest_unarchived_seconds",
                                "Seconds the oldest unarchived sealed segment has waited.",
                                value=0.0 if oldest is None else time.time() - oldest)
        yield CounterMetricFamily("phigate_archive_objects", "Objects archived since start.",
                                  value=archiver.uploaded)
        yield CounterMetricFamily("phigate_archive_upload_failures",
                                  "Uploads that failed since start (retried).",
                                  value=archiver.failures)
