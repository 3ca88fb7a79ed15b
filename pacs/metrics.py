"""The worker's Prometheus metrics (scraped on 127.0.0.1:<metrics_port>; no patient data in labels)."""

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from neuroscan.study import SliceAnswer


class WorkerMetrics:
    """Counters of what the worker did; a registry of its own, so tests can make several."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._studies = Counter("neuroscan_pacs_studies_total", "Studies analysed, by study verdict",
                                ["verdict"], registry=self.registry)
        self._failed = Counter("neuroscan_pacs_study_failures_total", "Studies whose analysis failed",
                               registry=self.registry)
        self._series = Counter("neuroscan_pacs_series_total", "Series analysed, by series verdict", ["verdict"],
                               registry=self.registry)
        self._slices = Counter("neuroscan_pacs_slices_total", "Slices sent to TorchServe, by outcome", ["outcome"],
                               registry=self.registry)
        self._waits = Counter("neuroscan_pacs_unavailable_total", "Times the PACS or TorchServe could not be reached",
                              registry=self.registry)
        self._seconds = Histogram("neuroscan_pacs_study_seconds", "Time to analyse one study (fetch to write-back)",
                                  buckets=(1, 2, 5, 10, 30, 60, 120, 300), registry=self.registry)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def study(self, verdict: str) -> None:
        self._studies.labels(verdict).inc()

    def failed(self) -> None:
        self._failed.inc()

    def unavailable(self) -> None:
        self._waits.inc()

    def series(self, verdict: str, answers: Sequence[SliceAnswer]) -> None:
        self._series.labels(verdict).inc()
        for answer in answers:
            outcome = "refused" if answer.error else "counted" if answer.counts else "left_out"
            self._slices.labels(outcome).inc()

    def study_seconds(self, seconds: float) -> None:
        self._seconds.observe(seconds)
