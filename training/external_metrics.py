"""The slice-level reference reading and the per-volume numbers measured against it.

The reference (``training/external_reference.csv``) is a by-eye reading, not a segmentation: each
row gives a run of axial slices ``k_first..k_last`` of one volume and sequence and whether the
lesion is visible there (``yes``, ``no``, or ``unsure`` at its edges). ``unsure`` slices are
counted but left out of sensitivity and false-positive rate, so a borderline reading cannot move
either. Only brain slices (:func:`training.external_volumes.is_brain_slice`) are scored.
"""

import csv
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from neuroscan.classes import NO_TUMOUR

REFERENCE_FILE = Path(__file__).resolve().parent / "external_reference.csv"
READINGS = ("yes", "no", "unsure")
CONFIDENT = 0.9  # a wrong "notumor" at or above this would reassure a reader


@dataclass(frozen=True)
class SliceResult:
    """The model's answer on one brain slice, next to the reference reading."""

    k: int
    reading: str  # yes / no / unsure
    label: str
    confidence: float
    mri_reason: str | None  # why the not-MRI check flagged the slice, None when it did not
    domain_reason: str | None = None  # why the slice is outside the validated domain (not-MRI included)
    probabilities: dict[str, float] | None = None  # per class, as served (the series rule needs them)
    # Where the heatmap of the answered class peaks ("anterior right": training/external_heatmaps.py).
    heatmap_quadrant: str | None = None
    # Share of ``notumor`` among the slice's nearest training slices by look (training/external_coverage.py);
    # None when the training images were not at hand.
    notumor_neighbours: float | None = None

    @property
    def is_mri(self) -> bool:
        return self.mri_reason is None

    @property
    def in_domain(self) -> bool:
        return self.domain_reason is None and self.is_mri


def read_reference(path: Path = REFERENCE_FILE) -> dict[tuple[str, str], list[dict]]:
    """Reference rows grouped by (volume, sequence), in file order."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            row["k_first"], row["k_last"] = int(row["k_first"]), int(row["k_last"])
            grouped.setdefault((row["volume"], row["sequence"]), []).append(row)
    return grouped


def readings(rows: list[dict], slices: int) -> list[str]:
    """One reading per slice; the rows must cover ``0..slices-1`` exactly once, in order."""
    out: list[str] = []
    for row in rows:
        if row["k_first"] != len(out) or row["k_last"] < row["k_first"] or row["tumour"] not in READINGS:
            raise ValueError(f"reference rows for {row['volume']}/{row['sequence']} are not contiguous: {row}")
        out += [row["tumour"]] * (row["k_last"] - row["k_first"] + 1)
    if len(out) != slices:
        raise ValueError(f"reference covers {len(out)} slices, the volume has {slices}")
    return out


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _confidences(values: list[float]) -> dict[str, float | None]:
    return {"max": max(values, default=None), "median": statistics.median(values) if values else None}


def summarise(results: list[SliceResult]) -> dict:
    """Sensitivity, false-positive rate and how sure the wrong answers were, over brain slices."""
    tumour = [r for r in results if r.reading == "yes"]
    free = [r for r in results if r.reading == "no"]
    hits = [r for r in tumour if r.label != NO_TUMOUR]
    false_alarms = [r for r in free if r.label != NO_TUMOUR]
    misses = [r for r in tumour if r.label == NO_TUMOUR]
    trusted_alarms = [r for r in false_alarms if r.in_domain]
    wrong = misses + false_alarms
    return {
        "brain_slices": len(results),
        "tumour_slices": len(tumour),
        "tumour_called_tumour": len(hits),
        "sensitivity": _ratio(len(hits), len(tumour)),
        "tumour_free_slices": len(free),
        "tumour_free_called_tumour": len(false_alarms),
        "false_positive_rate": _ratio(len(false_alarms), len(free)),
        "unsure_slices": sum(r.reading == "unsure" for r in results),
        "wrong_answers": len(wrong),
        "wrong_confidence": _confidences([r.confidence for r in wrong]),
        "confident_notumor_on_tumour": sum(r.confidence >= CONFIDENT for r in misses),
        "tumour_free_called_tumour_in_domain": len(trusted_alarms),
        "false_positive_rate_in_domain": _ratio(len(trusted_alarms), len(free)),
        "confident_notumor_on_tumour_in_domain": sum(r.confidence >= CONFIDENT and r.in_domain for r in misses),
        "flagged_not_mri": sum(not r.is_mri for r in results),
        "flagged_out_of_domain": sum(not r.in_domain for r in results),
        "labels": dict(sorted(Counter(r.label for r in results).items())),
    }


# Issue 10's bar per patient volume, and for all external brain slices together.
MIN_SENSITIVITY = 0.70
MAX_IN_DOMAIN_FALSE_POSITIVE_RATE = 0.20
MAX_FLAGGED_SHARE = 0.25


def volume_targets(row: dict) -> dict[str, bool | None]:
    """Which of the per-volume targets a :func:`summarise` row meets (None: nothing to measure)."""
    sensitivity, false_rate = row["sensitivity"], row["false_positive_rate_in_domain"]
    return {
        "sensitivity": None if sensitivity is None else sensitivity >= MIN_SENSITIVITY,
        "false_positives_in_domain": None if false_rate is None else false_rate <= MAX_IN_DOMAIN_FALSE_POSITIVE_RATE,
        "no_confident_notumor_in_domain": row["confident_notumor_on_tumour_in_domain"] == 0,
    }


def missed_targets(row: dict) -> list[str]:
    """The names of the :func:`volume_targets` a row misses (none where nothing could be measured)."""
    return [name for name, met in volume_targets(row).items() if met is False]


def flagged_share(rows: list[dict]) -> float:
    """Share of all brain slices of ``rows`` answered ``in_domain: false`` or ``is_mri: false``."""
    slices = sum(row["brain_slices"] for row in rows)
    return sum(row["flagged_out_of_domain"] for row in rows) / max(slices, 1)
