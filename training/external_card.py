"""The model card's "External validation" section, written from ``training/reports/external_<name>.json``.

Its readers are clinicians deciding whether to trust an answer, so it leads with a plain verdict
computed from the pooled patient numbers, then gives the per-volume table and the limits of the
measurement itself. :mod:`training.model_card` places it in the card.
"""

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from neuroscan.classes import NO_TUMOUR, TUMOUR_CLASSES
from training.external import markdown_table, patient_rows, table
from training.external_metrics import (
    CONFIDENT,
    MAX_FLAGGED_SHARE,
    MAX_IN_DOMAIN_FALSE_POSITIVE_RATE,
    MIN_SENSITIVITY,
    SliceResult,
    flagged_share,
    missed_targets,
)
from training.external_volumes import HEAD_LEVEL, MIN_HEAD_FRACTION, WINDOW_PERCENTILES

HEADING = "## External validation"
# Every version shipped before the current one, oldest first, each with its external report kept for
# comparison: 1.1.0 (before the robust retraining), 2.0.0 (before the synthetic masses), 2.1.0 (before
# Colin27) and 2.2.0 (before the average). Shipping a new model adds the one it replaces.
SHIPPED_BEFORE = ("1.1.0", "2.0.0", "2.1.0", "2.2.0")
BEFORE = tuple(f"lite0_{version}" for version in SHIPPED_BEFORE)


def load_external(reports: Path, name: str = "lite0") -> dict | None:
    path = reports / f"external_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pooled(rows: list[dict]) -> dict[str, int]:
    """Counts summed over volumes: the numbers of the verdict."""
    keys = ("brain_slices", "tumour_slices", "tumour_called_tumour", "tumour_free_slices",
            "tumour_free_called_tumour", "tumour_free_called_tumour_in_domain", "confident_notumor_on_tumour",
            "confident_notumor_on_tumour_in_domain", "flagged_not_mri", "flagged_out_of_domain")
    return {key: sum(row[key] for row in rows) for key in keys}


def wrong_by_domain(rows: list[dict]) -> dict[bool, tuple[int, int]]:
    """(wrong, answered) over the slices read `yes` or `no`, keyed by whether they were answered in domain.

    Wrong is `notumor` on a tumour slice or a tumour class on a tumour-free one: what ``in_domain: false``
    is there to warn of, so the two shares say whether the flag marks the wrong answers or a look.
    """
    counts = {True: [0, 0], False: [0, 0]}
    for answer in (SliceResult(**stored) for row in rows for stored in row["per_slice"]):
        if answer.reading in ("yes", "no"):
            tally = counts[answer.in_domain]
            tally[0] += (answer.label == NO_TUMOUR) == (answer.reading == "yes")
            tally[1] += 1
    return {inside: (wrong, answered) for inside, (wrong, answered) in counts.items()}


def count_share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.0%})" if whole else f"{part}/0"


def verdict(report: dict, val_accuracy: float) -> list[str]:
    """What a clinician needs to know first, in numbers: the targets met, and what the misses mean."""
    patients = patient_rows(report)
    totals = pooled(patients)
    failing = {f"{row['volume']}/{row['sequence']}": [shortfall(row, name) for name in names]
               for row in patients if (names := missed_targets(row))}
    share = flagged_share(patients)
    lead = ("The model meets the external targets on every patient volume (a small sample: read the limits below)."
            if not failing and share <= MAX_FLAGGED_SHARE else
            f"**The model misses the external targets on {len(failing)} of {len(patients)} patient volumes: do not "
            "rely on it for MRI from other hospitals or sequences, and never on its `notumor` alone.**")
    invented = Counter(s["label"] for row in patients for s in row["per_slice"]
                       if s["reading"] == "no" and s["label"] != NO_TUMOUR)
    invented_text = ", ".join(f"`{label}` {count}" for label, count in invented.most_common()) or "none"
    volumes = sorted({row["volume"] for row in patients})
    lines = [lead, "",
             (f"On {len(patients)} sequences of {len(volumes)} patients with a brain tumour ({', '.join(volumes)}), it "
              f"called {count_share(totals['tumour_called_tumour'], totals['tumour_slices'])} of the slices that show the "
              f"tumour a tumour, and {count_share(totals['tumour_free_called_tumour'], totals['tumour_free_slices'])} of the "
              f"slices without one a tumour (as {invented_text}); "
              f"{count_share(totals['tumour_free_called_tumour_in_domain'], totals['tumour_free_slices'])} were called a "
              f"tumour with `in_domain: true`. {totals['confident_notumor_on_tumour']} slices showing the tumour were "
              f"answered `notumor` at {CONFIDENT:g} or more, {totals['confident_notumor_on_tumour_in_domain']} of them "
              f"with `in_domain: true`. {share:.0%} of the patient brain slices were answered `in_domain: false` or "
              f"`is_mri: false` (target <= {MAX_FLAGGED_SHARE:.0%}{_over(share, MAX_FLAGGED_SHARE)}); the not-MRI "
              "check alone flagged "
              f"{count_share(totals['flagged_not_mri'], totals['brain_slices'])}. Compare {val_accuracy:.1%} accuracy on the "
              "validation split, which comes from the training collection."), ""]
    if failing:
        lines += [("Targets missed, and by how much (per volume: sensitivity >= "
                   f"{MIN_SENSITIVITY:.0%}, tumour-free slices called a tumour with `in_domain: true` <= "
                   f"{MAX_IN_DOMAIN_FALSE_POSITIVE_RATE:.0%}, no tumour slice `notumor` >= {CONFIDENT:g} with "
                   "`in_domain: true`):"), "",
                  *(f"- {volume}: {'; '.join(misses)}" for volume, misses in failing.items()), "",
                  *MEANING, ""]
    return lines


def _over(share: float, bar: float) -> str:
    """", N points over" when ``share`` exceeds its upper ``bar``, else nothing."""
    return f", {(share - bar) * 100:.0f} points over" if share > bar else ""


def shortfall(row: dict, target: str) -> str:
    """One missed per-volume target of a :func:`summarise` row, with by how much it is missed."""
    if target == "sensitivity":
        value, bar = row["sensitivity"], MIN_SENSITIVITY
        return f"sensitivity {value:.0%}, {(bar - value) * 100:.0f} points short of {bar:.0%}"
    if target == "false_positives_in_domain":
        value, bar = row["false_positive_rate_in_domain"], MAX_IN_DOMAIN_FALSE_POSITIVE_RATE
        return f"in-domain false positives {value:.0%}{_over(value, bar)} {bar:.0%}"
    count = row["confident_notumor_on_tumour_in_domain"]
    return f"{count} tumour slice{'s' if count != 1 else ''} `notumor` >= {CONFIDENT:g} in domain, target 0"


# What a missed target means for the person reading the answer.
MEANING = [
    "What this means for a clinician:",
    "",
    ("- a missed **sensitivity** target: on that kind of scan, tumour slices are answered `notumor`; a `notumor` "
     "answer never rules a tumour out;"),
    ("- a missed **false-positive** target: on that kind of scan, healthy slices (most often skull-base slices "
     "through the sella and orbits, answered `pituitary`) are called a tumour without a domain warning; a tumour "
     "answer is a prompt to look, not a finding;"),
    ("- a confident `notumor` with `in_domain: true` on a tumour slice is the worst answer the product can give; "
     "where it happens, the volume is named above."),
]


def _change(rows: list[dict], part: str, whole: str | None = None) -> str:
    return " -> ".join(count_share(row[part], row[whole]) if whole else str(row[part]) for row in rows)


def comparison(before: Sequence[dict], after: dict) -> list[str]:
    """Per patient volume: the earlier models' numbers, oldest first, then the shipped model's."""
    if not before:
        return []
    earlier = [{(row["volume"], row["sequence"]): row for row in patient_rows(report)} for report in before]
    header = ("volume", "sequence", "tumour slices called tumour", "tumour-free called tumour, `in_domain`",
              "`notumor` >= 0.9 on tumour, `in_domain`", "`in_domain: false` or `is_mri: false`")
    rows = []
    for row in patient_rows(after):
        chain = [old[(row["volume"], row["sequence"])] for old in earlier if (row["volume"], row["sequence"]) in old]
        if len(chain) < len(earlier):
            continue
        chain.append(row)
        rows.append((row["volume"], row["sequence"], _change(chain, "tumour_called_tumour", "tumour_slices"),
                     _change(chain, "tumour_free_called_tumour_in_domain", "tumour_free_slices"),
                     _change(chain, "confident_notumor_on_tumour_in_domain"),
                     _change(chain, "flagged_out_of_domain", "brain_slices")))
    totals = [pooled(patient_rows(report)) for report in [*before, after]]
    rows.append(("**all**", "", _change(totals, "tumour_called_tumour", "tumour_slices"),
                 _change(totals, "tumour_free_called_tumour_in_domain", "tumour_free_slices"),
                 _change(totals, "confident_notumor_on_tumour_in_domain"),
                 _change(totals, "flagged_out_of_domain", "brain_slices")))
    lines = table(header, rows)
    versions = " -> ".join(report["model_version"] for report in [*before, after])
    return [(f"Before and after: model {versions} on the same slices (1.1.0 had no domain limit: its `in_domain` "
             "is its not-MRI check)."), "", *lines, ""]


def series_section(report: dict) -> list[str]:
    """Per patient volume, the verdict the PACS worker's series rule gives (training/external_series.py)."""
    patients = [row for row in patient_rows(report) if "series" in row]
    if not patients:
        return []
    verdicts = Counter(row["series"]["verdict"] for row in patients)
    found = [row for row in patients if row["series"]["tumour_found"]]
    off_lesion = [f"{row['volume']}/{row['sequence']}" for row in found if not row["series"]["key_slices_on_tumour"]]
    header = ("volume", "sequence", "series verdict", "brain slices counted / left out",
              "key slices", "key slices on the lesion")
    lines = table(header, [(row["volume"], row["sequence"], f"`{row['series']['verdict']}`",
                            f"{row['series']['counted']} / {row['series']['left_out']}",
                            _ranges(row["series"]["key_slices"]),
                            f"{row['series']['key_slices_on_tumour']} of {len(row['series']['key_slices'])}")
                           for row in patients])
    counts = ", ".join(f"`{name}` {count}" for name, count in verdicts.most_common() if name in TUMOUR_CLASSES)
    others = ", ".join(f"`{name}` in {count}" for name, count in verdicts.most_common() if name not in TUMOUR_CLASSES)
    chance = (f" In {len(off_lesion)} of them ({', '.join(off_lesion)}) none of the key slices the verdict rests on "
              "shows the lesion: the tumour class came from false alarms elsewhere in the series, so the verdict is "
              "right by chance and its key slices point the reader to the wrong place." if off_lesion else "")
    return [("**Series verdicts** (what the PACS worker reports for a whole series, by its rule in "
             "`neuroscan/study.py` as `config/pacs.toml` sets it, over each volume's brain slices in order): a "
             f"tumour class in {len(found)} of {len(patients)} patient series ({counts})"
             f"{f', {others}' if others else ''}; every one of them shows a tumour, so a `notumor` series verdict "
             f"would be a wrong reassurance.{chance}"), "", *lines, ""]


def heatmap_section(report: dict) -> list[str]:
    """Whether the heatmap beside a tumour answer points at the lesion (training/external_heatmaps.py)."""
    rows = [row for row in patient_rows(report) if row.get("heatmap_on_lesion_side") is not None]
    if not rows:
        return []
    hits = sum(row["tumour_called_tumour"] for row in rows)
    side = sum(row["heatmap_on_lesion_side"] for row in rows)
    quadrant = sum(row["heatmap_in_lesion_quadrant"] for row in rows)
    header = ("volume", "sequence", "tumour slices called a tumour", "heatmap peak on the lesion's side",
              "in the lesion's quadrant")
    lines = table(header, [(row["volume"], row["sequence"], row["tumour_called_tumour"], row["heatmap_on_lesion_side"],
                            row["heatmap_in_lesion_quadrant"]) for row in rows])
    where = ("mostly the lesion" if hits and quadrant / hits >= 0.5 else "often not the lesion")
    return [("**Where the heatmap points** (the peak of the answered class's Grad-CAM, as served beside each answer, "
             "by quadrant of the head, against each patient's by-eye lesion site in "
             "`training/external_lesion_sites.csv`): on the tumour slices called a tumour it lies on the lesion's "
             f"side in {count_share(side, hits)} and in the lesion's quadrant in {count_share(quadrant, hits)}, where "
             f"chance would give about a half and a quarter. On these patients it shows {where}; it marks where the "
             "model's evidence lies, not the tumour's outline."), "", *lines, ""]


# Slice outcomes whose training neighbourhoods the card compares: (reference reading, called a tumour).
OUTCOMES = {"false alarms": ("no", True), "right `notumor`": ("no", False), "hits": ("yes", True),
            "misses": ("yes", False)}


def neighbour_shares(slices: list[dict]) -> dict[str, list[float]]:
    """Per outcome, the measured ``notumor_neighbours`` of ``slices`` (per-slice rows of a report)."""
    shares: dict[str, list[float]] = {name: [] for name in OUTCOMES}
    for s in slices:
        outcome = next((name for name, (reading, tumour) in OUTCOMES.items()
                        if s["reading"] == reading and (s["label"] != NO_TUMOUR) == tumour), None)
        if outcome and s.get("notumor_neighbours") is not None:
            shares[outcome].append(s["notumor_neighbours"])
    return shares


def coverage_section(report: dict) -> list[str]:
    """Whether the model errs where the data set has nothing to learn the right answer from: the tumour-free
    share of each slice's nearest training slices (training/external_coverage.py), by outcome."""
    base = report.get("training_notumor_share")
    if base is None:
        return []
    patients = patient_rows(report)
    per_volume = [(f"{row['volume']}/{row['sequence']}", neighbour_shares(row["per_slice"])) for row in patients]
    pooled_shares = neighbour_shares([s for row in patients for s in row["per_slice"]])
    header = ("volume", *(f"{name}: slices, tumour-free neighbours" for name in OUTCOMES))
    lines = table(header, [(name, *(_share_cell(shares[o]) for o in OUTCOMES))
                           for name, shares in [*per_volume, ("**all**", pooled_shares)]])
    starved = [name for name, shares in per_volume if shares["false alarms"] and _mean(shares["false alarms"]) < base / 2]
    return [("**Where the errors lie** (for each slice, the share of tumour-free slices among the 10 training slices "
             "that look most like it, by the features of the ImageNet-pretrained Lite0, which never saw these labels: "
             "the neighbours follow sequence, level and framing, not the shipped model's answer; "
             f"`training/external_coverage.py`; {base:.0%} of all training slices are tumour-free). A low share "
             "marks a gap in the data, not on its own an error: the comparison between outcomes says which errors "
             "lie in one. "
             f"{_alarms_text(pooled_shares, starved)} {_misses_text(pooled_shares)}"), "", *lines, ""]


def _alarms_text(shares: dict[str, list[float]], starved: list[str]) -> str:
    text = (f"Healthy slices called a tumour have {_mean(shares['false alarms']):.0%} tumour-free neighbours, those "
            f"answered `notumor` {_mean(shares['right `notumor`']):.0%}.")
    if starved:
        text += (f" The false alarms of {', '.join(starved)} lie where the data set holds under half its share of "
                 "tumour-free slices: nearly every training slice that looks like them carries a tumour label, so "
                 "the answer repeats what the data set teaches; tumour-free scans of that kind would be needed, "
                 "more training on this data set cannot supply them.")
    return text


def _misses_text(shares: dict[str, list[float]]) -> str:
    misses, hits = _mean(shares["misses"]), _mean(shares["hits"])
    text = f"Tumour slices answered `notumor` have {misses:.0%} tumour-free neighbours, those called a tumour {hits:.0%}"
    if misses - hits > 0.15:
        return text + ": the misses lie where tumours like these are scarce in the data set."
    return text + ": the misses do not lie where the data set lacks tumours like them, so coverage does not explain them."


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _share_cell(values: list[float]) -> str:
    return f"{len(values)}: {_mean(values):.0%}" if values else "0"


def _ranges(indices: list[int]) -> str:
    """Slice numbers as runs: 3, 4, 5, 9 -> "3-5, 9"."""
    runs: list[list[int]] = []
    for k in indices:
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs) or "-"


def method() -> list[str]:
    low, high = WINDOW_PERCENTILES
    return [
        ("- **Data:** whole axial NIfTI volumes (`../shared/data/external`, see its README): TCGA-LGG patient "
         "TCGA-FG-6692 (raw scanner export with skull, 5.5 mm slices; T1, T1 post-contrast, T2, FLAIR) and BraTS 2023 "
         "metastasis case 00110 (skull-stripped, co-registered, 1 mm; T1, T1 post-contrast, T2, FLAIR); plus brain MRI "
         "shipped in packages: nilearn's MNI152 2009a T1 template, Colin27 from Debian's `mricron-data` (one healthy "
         "adult's head with skull, T1) and pydicom's `MR_small.dcm` (a 64x64 crop, decoded and header-checked like "
         "an upload). None of the patient volumes was used for training or for fitting "
         "any threshold (the domain limit was fixed before they were scored; \"Validated domain\" says what was "
         "compared on them afterwards). From 2.0 the MNI152 template and from 2.2 Colin27 are training data (no-tumour slices, "
         "`training/healthy.py`): their rows show the model on what it was trained on, not external evidence."),
        (f"- **Slices:** each volume reoriented to RAS+ and each axial slice shown as radiologists view it (anterior up, "
         f"the patient's right on the image's left); one window per volume, the {low:g}th to {high:g}th percentile of "
         f"its non-zero voxels mapped to 0-255, as a DICOM or PNG export would store it. A slice is a **brain slice** "
         f"when at least {MIN_HEAD_FRACTION:.0%} of its pixels are head (8-bit grey above {HEAD_LEVEL}); only brain "
         "slices are scored."),
        ("- **Reference:** `training/external_reference.csv`, a by-eye reading per sequence of which slices show the "
         "lesion (`yes`, `no`, or `unsure` at its edges; `unsure` slices are left out of both rates). Not an expert "
         "segmentation."),
        ("- **Model:** the shipped weight file, eager fp32, with the served preprocessing, temperature, not-MRI check "
         "and domain limit (the service runs the fp32 ONNX export of the same network, which answers every external "
         "slice as it does: README, Performance). A slice is "
         "\"called a tumour\" when the top class is not `notumor`; the tumour type is not scored (no type reference "
         "for the metastasis)."),
    ]


def limits(patients: int) -> list[str]:
    return [
        (f"- {patients} patients, one reader, no segmentation: the rates are a warning sign, not an estimate with "
         "a margin."),
        ("- Series verdicts are computed from the brain slices only; the PACS worker would also send the "
         "near-empty slices at either end of a series, which are not measured here."),
        ("- The packaged templates are averaged healthy heads; they show how the model behaves on tidy images, not on "
         "patients."),
    ]


def external_section(report: dict | None, val_accuracy: float, before: Sequence[dict] = ()) -> list[str]:
    """The whole section; a short note when no external report has been written yet."""
    if report is None:
        return [HEADING, "", "Not measured yet: run `make external`.", ""]
    patients = len({row["volume"] for row in patient_rows(report)})
    return [f"{HEADING} (model {report['model_version']}, `make external`)", "",
            *verdict(report, val_accuracy), *comparison(before, report), *method(), "",
            *markdown_table(report), "",
            ("Columns: brain slices scored; tumour slices called a tumour (sensitivity); tumour-free slices called a "
             "tumour, all of them and those answered `in_domain: true`; slices read `unsure`; tumour slices answered "
             f"`notumor` at >= {CONFIDENT:g}, all and `in_domain: true`; slices answered `in_domain: false` (the "
             "not-MRI ones included) and `is_mri: false`; the confidence of the wrong answers; the answers given; the "
             "per-volume targets missed. Per-slice answers: `training/reports/external_lite0.json`."), "",
            *series_section(report), *heatmap_section(report), *coverage_section(report),
            "Limits of this measurement:", "",
            *limits(patients), ""]
