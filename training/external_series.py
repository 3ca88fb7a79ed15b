"""The study-level answer on each external volume: the PACS worker's series rule over its slices.

Clinicians using the PACS never see one slice's answer alone: the worker orders a series, sends
every slice and reports the series verdict of :func:`neuroscan.study.aggregate_series` (a tumour
class only where at least two neighbouring in-domain slices agree). Every external patient volume
shows a tumour, so the right verdict is a tumour class (its type is not scored: there is no type
reference for the metastasis); ``notumor`` is the answer that would reassure wrongly, and
``inconclusive`` says the series is mostly outside the validated domain.

The slices are the volume's brain slices in order, as :mod:`training.external` scores them; the
worker would also send the few near-empty slices at either end, which are not measured here.
"""

import tomllib
from dataclasses import fields
from pathlib import Path

from neuroscan.classes import TUMOUR_CLASSES
from neuroscan.settings import REPO_ROOT
from neuroscan.study import AggregationRule, SliceAnswer, aggregate_series
from training.external_metrics import SliceResult

WORKER_CONFIG = REPO_ROOT / "config" / "pacs.toml"


def served_rule(config: Path = WORKER_CONFIG) -> AggregationRule:
    """The rule as the PACS worker is configured, so the card measures what is served."""
    raw = tomllib.loads(config.read_text())["pacs"]
    return AggregationRule(**{f.name: raw[f.name] for f in fields(AggregationRule) if f.name in raw})


def slice_answer(result: SliceResult) -> SliceAnswer:
    """One external slice's answer as the worker holds it (``k`` stands for the instance)."""
    return SliceAnswer(str(result.k), result.label, result.probabilities or {result.label: result.confidence},
                       is_mri=result.is_mri, in_domain=result.in_domain)


def series_verdict(results: list[SliceResult], rule: AggregationRule | None = None) -> dict:
    """The series verdict over ``results`` (brain slices in volume order) and where its key slices lie."""
    verdict = aggregate_series("external", [slice_answer(r) for r in results], rule or served_rule())
    keys = [results[i] for i in verdict.key_slices]
    return {"verdict": verdict.verdict, "tumour_found": verdict.verdict in TUMOUR_CLASSES,
            "counted": verdict.counted, "left_out": verdict.left_out, "key_slices": [r.k for r in keys],
            "key_slices_on_tumour": sum(r.reading == "yes" for r in keys)}
