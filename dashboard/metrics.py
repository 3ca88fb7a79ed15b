"""Metrics both ways: the dashboard's own Prometheus counters, and TorchServe's read for the charts.

The dashboard's counters live in a registry of their own (not prometheus-client's global one) so
each app instance, and each test, starts from a clean slate; ``/metrics`` serves that registry.
TorchServe exports cumulative counters, so rates and mean latencies come from the difference
between two scrapes.
"""

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from neuroscan.classes import CLASSES


class DashboardMetrics:
    """Counters a Prometheus server scrapes from the dashboard at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.analyses = Counter("neuroscan_dashboard_analyses", "Images analysed, by predicted class",
                                ["label"], registry=self.registry)
        self.failures = Counter("neuroscan_dashboard_analysis_failures", "Uploads that got no result, by reason",
                                ["code"], registry=self.registry)
        self.sign_ins = Counter("neuroscan_dashboard_sign_ins", "Sign-in attempts, by outcome",
                                ["outcome"], registry=self.registry)
        self.feedback = Counter("neuroscan_dashboard_feedback", "Clinician verdicts, agree or corrected",
                                ["verdict"], registry=self.registry)
        self.reports = Counter("neuroscan_dashboard_reports", "PDF reports downloaded", registry=self.registry)
        self.latency = Histogram("neuroscan_dashboard_inference_seconds",
                                 "Round trip of one explanation call to TorchServe", registry=self.registry)

    def exposition(self) -> bytes:
        """The Prometheus text format of all the dashboard's metrics."""
        return generate_latest(self.registry)

    def totals(self) -> dict[str, float]:
        """Counter totals by sample name and labels, for the operator page."""
        totals = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = ",".join(f"{k}={v}" for k, v in sample.labels.items())
                    totals[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return totals


@dataclass(frozen=True)
class ServeSample:
    """TorchServe's cumulative counters at one scrape."""

    at: float
    requests: float
    latency_us: float
    per_class: dict[str, float]


def parse_torchserve(text: str, model_name: str, at: float | None = None) -> ServeSample:
    """Sum the counters of ``model_name`` over versions and hosts from a Prometheus text scrape."""
    requests = latency = 0.0
    per_class = dict.fromkeys(CLASSES, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k.lower(): v for k, v in sample.labels.items()}
            if labels.get("model_name", labels.get("modelname")) != model_name:
                continue
            name = sample.name.removesuffix("_total")
            if name == "ts_inference_requests":
                requests += sample.value
            elif name == "ts_inference_latency_microseconds":
                latency += sample.value
            elif name == "PredictionsPerClass" and labels.get("class") in per_class:
                per_class[labels["class"]] += sample.value
    return ServeSample(time.monotonic() if at is None else at, requests, latency, per_class)


@dataclass
class ServeHistory:
    """The last scrapes turned into chart points: requests per second and mean latency in ms."""

    points: int
    times: deque[str] = field(init=False)
    rates: deque[float] = field(init=False)
    latencies_ms: deque[float] = field(init=False)
    last: ServeSample | None = None

    def __post_init__(self) -> None:
        self.times, self.rates, self.latencies_ms = (deque(maxlen=self.points) for _ in range(3))

    def add(self, sample: ServeSample, label: str) -> None:
        """Append the rates since the previous sample (a counter reset, i.e. a restart, counts from zero)."""
        if self.last is not None and sample.at > self.last.at:
            requests = sample.requests - self.last.requests
            latency = sample.latency_us - self.last.latency_us
            if requests < 0:
                requests, latency = sample.requests, sample.latency_us
            self.times.append(label)
            self.rates.append(round(requests / (sample.at - self.last.at), 3))
            self.latencies_ms.append(round(latency / requests / 1000, 1) if requests else 0.0)
        self.last = sample
