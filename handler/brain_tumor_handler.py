"""TorchServe handler for brain MRI classification: batch-aware, per-item errors, Grad-CAM.

Template methods as in TorchServe's image handlers: ``initialize`` loads the safetensors
weights once per worker, ``preprocess`` decodes and validates each request on its own,
``inference`` runs one forward pass over the valid items, ``postprocess`` builds one JSON
answer per request. A bad item gets its own 4xx; the rest of its batch is answered normally.
"""

import contextlib
import logging
import time
from collections import Counter
from pathlib import Path

import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.batch import Item
from handler.explain import heatmap_png
from handler.features import create_backend
from handler.metrics import HandlerMetrics
from handler.payload import request_bytes
from handler.settings import HandlerSettings
from neuroscan.calibration import calibrated_probabilities
from neuroscan.classes import CLASSES, NO_TUMOUR
from neuroscan.imaging import ImageDecodeError, decode_image
from neuroscan.inference import class_activation
from neuroscan.mri_check import (
    NeighbourDistance,
    answer_reasons,
    dicom_reason,
    feature_flags,
    pixel_reason,
)
from neuroscan.preprocess import pixels, preprocess_batch
from neuroscan.spec import get_spec
from neuroscan.telemetry import (
    capture_exception,
    configure_json_logging,
    init_sentry,
    request_context,
)
from neuroscan.weights import WeightsError, load_weights

logger = logging.getLogger(__name__)

# HTTP status per refusal code; anything unlisted is a plain 400.
STATUS = {"unsupported_type": 415, "image_too_large": 413, "corrupt_image": 422, "not_mri": 422}


class BrainTumorHandler(BaseHandler):
    """Classifies brain MRI slices into the four classes with calibrated probabilities."""

    def initialize(self, context) -> None:
        configure_json_logging("handler")
        self.context = context
        self.manifest = context.manifest
        self.model_yaml_config = context.model_yaml_config
        self.settings = HandlerSettings.from_yaml(self.model_yaml_config)
        torch.set_num_threads(self.settings.torch_threads)
        model_dir = Path(context.system_properties.get("model_dir"))
        try:
            weight_file = load_weights(model_dir / self.settings.weights)
        except WeightsError as exc:
            logger.critical("refusing to start: %s", exc)
            raise
        self.meta = weight_file.meta
        init_sentry("handler", self.meta.version)
        self.spec = get_spec(self.meta.spec)
        self.ood = NeighbourDistance.from_extras(weight_file.extras)
        if self.ood is not None and self.settings.not_mri_threshold is not None:
            self.ood.threshold = torch.tensor(self.settings.not_mri_threshold)
        if self.ood is not None and self.settings.domain_threshold is not None:
            self.ood.domain_threshold = torch.tensor(self.settings.domain_threshold)
        self.head_weight = weight_file.state_dict["classifier.weight"].float()
        self.head_bias = weight_file.state_dict["classifier.bias"].float()
        self.features = create_backend(self.settings.backend, weight_file, model_dir, self.settings.backend_options)
        self.metrics = HandlerMetrics(context.metrics, context.model_name)
        self.initialized = True
        logger.info("loaded model version %s (backend %s, T=%.3f)", self.meta.version,
                    self.features.name, self.meta.temperature)

    def handle(self, data: list[dict], context) -> list[dict]:
        self.context = context
        try:
            items = self.preprocess(data)
            self.inference(items)
            return self.postprocess(items)
        except Exception:  # TorchServe only logs it at WARNING, which Sentry would not send
            capture_exception(request_ids=[self._header(i, "x-request-id") or "" for i in range(len(data))])
            raise

    def preprocess(self, data: list[dict]) -> list[Item]:
        start = time.perf_counter()
        items = [self._prepare(index, request) for index, request in enumerate(data)]
        self.metrics.batch(len(items))
        self.metrics.preprocess_time((time.perf_counter() - start) * 1000)
        return items

    def _prepare(self, index: int, request: dict) -> Item:
        item = Item(index, explain=self._header(index, "explain") == "True",
                    request_id=self._header(index, "x-request-id"))
        # its id on the decoder's log lines and Sentry events (one request at a time here, unlike a batch)
        with request_context(item.request_id) if item.request_id else contextlib.nullcontext():
            try:
                item.decoded = decode_image(request_bytes(request))
            except ImageDecodeError as exc:
                item.error = exc
                return item
            except Exception:  # a file that trips a decoder in a way nobody foresaw: this item only
                logger.warning("decoding request %d failed unexpectedly", index, exc_info=True)
                capture_exception()  # once: a WARNING log is only a breadcrumb to Sentry
                item.error = ImageDecodeError("corrupt_image", "The file could not be read as an image.")
                return item
        item.pixels = pixels(item.decoded.image, self.spec)
        item.input_reason = dicom_reason(item.decoded.header) or pixel_reason(item.pixels)
        return item

    def _header(self, index: int, name: str) -> str | None:
        """A request header by lower-case name: TorchServe passes names as the client spelled them
        (``X-Request-ID``), while HTTP says they are case-insensitive."""
        headers = self.context.get_all_request_header(index) or {}
        value = next((v for key, v in headers.items() if key.lower() == name), None)
        return value.decode() if isinstance(value, (bytes, bytearray)) else value

    def inference(self, items: list[Item]) -> None:
        valid = [item for item in items if item.pixels is not None]
        if not valid:
            return
        feature_map = self.features(preprocess_batch([item.pixels for item in valid], self.spec)).float()
        pooled = feature_map.mean(dim=(2, 3))
        logits = pooled @ self.head_weight.T + self.head_bias
        probabilities = calibrated_probabilities(logits, self.meta.temperature)
        outliers, outside = feature_flags(self.ood, pooled)
        for row, item in enumerate(valid):
            item.result = self._result(item, probabilities[row], bool(outliers[row]), bool(outside[row]))
            if item.explain:
                cam = class_activation(feature_map[row], self.head_weight, CLASSES.index(item.result["label"]))
                item.result["heatmap_png"] = heatmap_png(cam)

    def _result(self, item: Item, probabilities: torch.Tensor, outlier: bool, outside: bool) -> dict:
        top = int(probabilities.argmax())
        reason, domain_reason = answer_reasons(item.input_reason, outlier, outside, item.pixels)
        return {
            "label": CLASSES[top],
            "probabilities": {name: round(float(p), 6) for name, p in zip(CLASSES, probabilities)},
            "confidence": round(float(probabilities[top]), 6),
            "tumour": CLASSES[top] != NO_TUMOUR,
            "is_mri": reason is None,
            "mri_reason": reason,
            "in_domain": domain_reason is None,
            "domain_reason": domain_reason,
            "model_version": self.meta.version,
            "format": item.decoded.format,
            "dicom_tags": item.decoded.dicom_tags,
        }

    def postprocess(self, items: list[Item]) -> list[dict]:
        answers = [self._answer(item) for item in items]
        self._record(items)
        return answers

    def _answer(self, item: Item) -> dict:
        if item.error is None and not item.result["is_mri"] and self.settings.reject_non_mri:
            item.error = ImageDecodeError("not_mri", f"This does not look like a brain MRI slice: {item.result['mri_reason']}.")
        if item.error is None:
            return item.result
        self.context.set_response_status(STATUS.get(item.error.code, 400), item.error.code, idx=item.index)
        return {"error": item.error.message, "code": item.error.code}

    def _record(self, items: list[Item]) -> None:
        """Metrics and one log line per batch, not per item: each line costs the worker and the Java
        frontend (which parses every metric line) CPU that the forward pass needs at full load."""
        labels = Counter(item.result["label"] for item in items if item.error is None)
        refusals = Counter(item.error.code if item.error else "not_mri" for item in items
                           if item.error or not item.result["is_mri"])
        for label, count in labels.items():
            self.metrics.prediction(label, count)
        for code, count in refusals.items():
            self.metrics.rejected(code, count)
        outside = sum(item.error is None and item.result["is_mri"] and not item.result["in_domain"] for item in items)
        if outside:
            self.metrics.out_of_domain(outside)
        logger.info("answered %d: %s", len(items), ", ".join(f"{n} {name}" for name, n in (labels + refusals).items()),
                    extra={"requests": [_log_entry(item) for item in items]})


def _log_entry(item: Item) -> dict:
    """What the batch's log line says of one request, under its request id."""
    if item.error is not None:
        return {"request_id": item.request_id, "refused": item.error.code}
    return {"request_id": item.request_id, "label": item.result["label"],
            "confidence": item.result["confidence"], "is_mri": item.result["is_mri"],
            "in_domain": item.result["in_domain"]}
