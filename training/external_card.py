"""The model card's "External validation" section, written from ``training/reports/external_<name>.json``.

Its readers are clinicians deciding whether to trust an answer, so it leads with a plain verdict
computed from the pooled patient numbers, then gives the per-volume table and the limits of the
measurement itself. The section can be re-rendered on its own (:func:`splice`), because the rest
of the card needs the GPU training logs, which only the training machine has.
"""

import json
from collections import Counter
from pathlib import Path

from neuroscan.classes import NO_TUMOUR
from training.external import markdown_table
from training.external_metrics import CONFIDENT
from training.external_volumes import HEAD_LEVEL, MIN_HEAD_FRACTION, WINDOW_PERCENTILES

HEADING = "## External validation"
# Below these, the model is not holding up: the validation split shows 97.7-100% recall per class.
MIN_SENSITIVITY, MAX_FALSE_POSITIVE_RATE = 0.9, 0.1


def load_external(reports: Path, name: str = "lite0") -> dict | None:
    path = reports / f"external_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pooled(rows: list[dict]) -> dict[str, int]:
    """Counts summed over volumes: the numbers of the verdict."""
    keys = ("brain_slices", "tumour_slices", "tumour_called_tumour", "tumour_free_slices",
            "tumour_free_called_tumour", "confident_notumor_on_tumour", "flagged_not_mri")
    return {key: sum(row[key] for row in rows) for key in keys}


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else f"{part}/0"


def verdict(report: dict, val_accuracy: float) -> list[str]:
    """What a clinician needs to know first, in numbers."""
    patients = [row for row in report["volumes"] if not row["packaged"]]
    totals = pooled(patients)
    sensitivity = totals["tumour_called_tumour"] / max(totals["tumour_slices"], 1)
    false_rate = totals["tumour_free_called_tumour"] / max(totals["tumour_free_slices"], 1)
    holds = sensitivity >= MIN_SENSITIVITY and false_rate <= MAX_FALSE_POSITIVE_RATE
    lead = ("The model holds up on these scans (a small sample: read the limits below)." if holds else
            "**The shipped model does not hold up on these scans: do not use it on MRI from other hospitals "
            "or sequences.**")
    volumes = sorted({row["volume"] for row in patients})
    invented = Counter(s["label"] for row in patients for s in row["per_slice"]
                       if s["reading"] == "no" and s["label"] != NO_TUMOUR)
    invented_text = ", ".join(f"`{label}` {count}" for label, count in invented.most_common()) or "none"
    return [lead, "",
            (f"On {len(patients)} sequences of {len(volumes)} patients with a brain tumour ({', '.join(volumes)}), "
             f"it called {_share(totals['tumour_called_tumour'], totals['tumour_slices'])} of the slices that "
             f"show the tumour a tumour, and {_share(totals['tumour_free_called_tumour'], totals['tumour_free_slices'])} "
             f"of the slices without one a tumour (as {invented_text}). {totals['confident_notumor_on_tumour']} slices showing the tumour "
             f"were answered `notumor` with a confidence of {CONFIDENT:g} or more: on these scans a high confidence "
             f"does not mean a right answer. The not-MRI check flagged {_share(totals['flagged_not_mri'], totals['brain_slices'])} "
             f"of these brain slices, so it does not warn that a scan lies outside what the model knows. "
             f"Compare {val_accuracy:.1%} accuracy on the validation split, which comes from the training collection."),
            ""]


def method() -> list[str]:
    low, high = WINDOW_PERCENTILES
    return [
        ("- **Data:** whole axial NIfTI volumes (`../shared/data/external`, see its README): TCGA-LGG patient "
         "TCGA-FG-6692 (raw scanner export with skull, 5.5 mm slices; T1, T1 post-contrast, T2, FLAIR) and BraTS 2023 "
         "metastasis case 00110 (skull-stripped, co-registered, 1 mm; T1, T1 post-contrast, T2, FLAIR); plus brain MRI "
         "shipped in PyPI packages: nilearn's MNI152 2009a T1 template and pydicom's `MR_small.dcm` (a 64x64 crop, "
         "decoded and header-checked like an upload). None of it was used for training or for choosing any threshold."),
        (f"- **Slices:** each volume reoriented to RAS+ and each axial slice shown as radiologists view it (anterior up, "
         f"the patient's right on the image's left); one window per volume, the {low:g}th to {high:g}th percentile of "
         f"its non-zero voxels mapped to 0-255, as a DICOM or PNG export would store it. A slice is a **brain slice** "
         f"when at least {MIN_HEAD_FRACTION:.0%} of its pixels are head (8-bit grey above {HEAD_LEVEL}); only brain "
         "slices are scored."),
        ("- **Reference:** `training/external_reference.csv`, a by-eye reading per sequence of which slices show the "
         "lesion (`yes`, `no`, or `unsure` at its edges; `unsure` slices are left out of both rates). Not an expert "
         "segmentation."),
        ("- **Model:** the shipped weight file, eager fp32, with the served preprocessing, temperature and not-MRI "
         "check (the service runs an int8 copy of the same features: README, Performance). A slice is \"called a "
         "tumour\" when the top class is not `notumor`; the tumour type is not scored (no type reference for the "
         "metastasis)."),
    ]


def limits(patients: int) -> list[str]:
    return [
        (f"- {patients} patients, one reader, no segmentation: the rates are a warning sign, not an estimate with "
         "a margin."),
        ("- Slice by slice only: how a study-level answer built from these slices would fare was not measured "
         "here."),
        ("- The packaged template is a clean average brain; it shows how the model behaves on tidy images, not on "
         "patients."),
    ]


def external_section(report: dict | None, val_accuracy: float) -> list[str]:
    """The whole section; a short note when no external report has been written yet."""
    if report is None:
        return [HEADING, "", "Not measured yet: run `make external`.", ""]
    patients = len({row["volume"] for row in report["volumes"] if not row["packaged"]})
    return [f"{HEADING} (model {report['model_version']}, `make external`)", "",
            *verdict(report, val_accuracy), *method(), "",
            *markdown_table(report), "",
            ("Columns: slices in the volume; brain slices scored; tumour slices called a tumour (sensitivity); "
             "tumour-free slices called a tumour (false-positive rate); slices read `unsure`; the confidence of the "
             f"wrong answers; tumour slices answered `notumor` at >= {CONFIDENT:g}; slices the not-MRI check flagged; "
             "the answers given. Per-slice answers: `training/reports/external_lite0.json`."), "",
            "Limits of this measurement:", "", *limits(patients), ""]


def splice(card: str, section: list[str], before: str) -> str:
    """``card`` with its External validation section replaced by ``section`` (inserted before ``before``)."""
    lines = card.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(HEADING)), None)
    if start is None:
        start = end = lines.index(before)
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + section + lines[end:])
