"""The handler's own metrics, published through TorchServe's metrics cache.

With ``model_metrics_auto_detect=true`` in config.properties they appear on the Prometheus
endpoint next to TorchServe's: predictions per class, rejected inputs per reason, brain MRI answers
outside the validated domain (a new scanner or sequence shows up here first), the size of
every batch the handler receives (a histogram: a counter's running sum cannot show it) and
preprocessing time.
"""

from ts.metrics.metric_type_enum import MetricTypes


class HandlerMetrics:
    """Thin names-and-dimensions layer over ``context.metrics``."""

    def __init__(self, metrics_cache, model_name: str):
        self.model_name = model_name
        add = metrics_cache.add_metric_to_cache
        self._predictions = add("PredictionsPerClass", "count", ["ModelName", "class"], MetricTypes.COUNTER)
        self._rejected = add("RejectedInputs", "count", ["ModelName", "reason"], MetricTypes.COUNTER)
        self._outside = add("OutOfDomainAnswers", "count", ["ModelName"], MetricTypes.COUNTER)
        self._batch = add("HandlerBatchSize", "count", ["ModelName"], MetricTypes.HISTOGRAM)
        self._preprocess = add("PreprocessTimeMs", "ms", ["ModelName"], MetricTypes.HISTOGRAM)

    def prediction(self, label: str, count: int = 1) -> None:
        self._predictions.add_or_update(count, [self.model_name, label])

    def rejected(self, reason: str, count: int = 1) -> None:
        self._rejected.add_or_update(count, [self.model_name, reason])

    def out_of_domain(self, count: int) -> None:
        self._outside.add_or_update(count, [self.model_name])

    def batch(self, size: int) -> None:
        self._batch.add_or_update(size, [self.model_name])

    def preprocess_time(self, milliseconds: float) -> None:
        self._preprocess.add_or_update(round(milliseconds, 3), [self.model_name])
