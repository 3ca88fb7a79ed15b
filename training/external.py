"""External validation: the shipped model on real brain MRI from other collections, slice by slice.

    python -m training.external --weights model_store/brain_tumor.safetensors --name lite0 \
        --external ../shared/data/external

The validation split says 99% accuracy; it comes from the same collection the model was trained
on. This runner asks the question a clinician would: on scans from other scanners and sequences,
does it find the tumour, and does it invent one where there is none? It runs the weight file eager
fp32 through the core's preprocessing, temperature and not-MRI check (the numbers the service
would give, up to its int8 backend), over every brain slice of every patient volume and of the
packaged brain MRI, and scores them against ``training/external_reference.csv``.

Writes ``training/reports/external_<name>.json`` (per volume and per slice) and ``.md`` (table).
Each tumour slice called a tumour is also checked for where its heatmap points, against the
lesion's by-eye site (:mod:`training.external_heatmaps`). With the training images at hand
(``--data``) each slice also gets the share of ``notumor`` among the training slices that look
most like it (:mod:`training.external_coverage`): whether the data set holds anything to learn
the right answer from. Nothing here trains or tunes on these volumes: they are a measuring
instrument only.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image

from neuroscan.calibration import calibrated_probabilities
from neuroscan.classes import CLASSES
from neuroscan.inference import class_activation, head_outputs
from neuroscan.model import load_trained_model
from neuroscan.mri_check import (
    NeighbourDistance,
    answer_reasons,
    dicom_reason,
    feature_flags,
    pixel_reason,
)
from neuroscan.preprocess import pixels, preprocess_batch
from neuroscan.spec import get_spec
from training.data import DEFAULT_ROOT
from training.external_coverage import TrainingNeighbours
from training.external_heatmaps import heatmap_hits, peak_quadrant, read_sites
from training.external_metrics import (
    MAX_FLAGGED_SHARE,
    REFERENCE_FILE,
    SliceResult,
    flagged_share,
    missed_targets,
    read_reference,
    readings,
    summarise,
)
from training.external_series import series_verdict
from training.external_sources import (
    ExternalDataMissing,
    packaged_volumes,
    patient_volumes,
)
from training.external_volumes import Volume, is_brain_slice
from training.split import load_split

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "training" / "reports"
DEFAULT_EXTERNAL = ROOT.parent / "shared" / "data" / "external"


class Classifier:
    """The weight file as the service applies it: model, temperature and not-MRI check."""

    def __init__(self, weights: Path) -> None:
        self.model, weight_file = load_trained_model(weights)
        self.meta = weight_file.meta
        self.spec = get_spec(self.meta.spec)
        self.ood = NeighbourDistance.from_extras(weight_file.extras)

    @torch.no_grad()
    def answer(self, slices: list, dicom_tags: dict[str, str]) -> list[tuple[dict[str, float], str | None, str | None,
                                                                            str | None]]:
        """(probabilities, not-MRI reason, outside-domain reason, heatmap peak quadrant) per 8-bit slice, as the
        handler forms them."""
        batch = [pixels(Image.fromarray(s), self.spec) for s in slices]
        feature_map = self.model.forward_features(preprocess_batch(batch, self.spec))
        logits, features = head_outputs(self.model, feature_map)
        probabilities = calibrated_probabilities(logits, self.meta.temperature)
        outliers, outside = feature_flags(self.ood, features)
        header = dicom_reason(dicom_tags)
        weight = self.model.get_classifier().weight
        return [({name: round(float(v), 4) for name, v in zip(CLASSES, p)},
                 *answer_reasons(header or pixel_reason(px), bool(outlier), bool(away), px),
                 peak_quadrant(class_activation(maps, weight, int(p.argmax())), px))
                for p, px, outlier, away, maps in zip(probabilities, batch, outliers, outside, feature_map)]


def score_volume(classifier: Classifier, volume: Volume, reference: list[str], site: str | None = None,
                 neighbours: TrainingNeighbours | None = None) -> dict:
    """Per-slice answers on the brain slices of one volume, their summary and the series verdict; with the
    lesion's ``site``, where the heatmaps of its hits point; with ``neighbours``, also how much of the
    training set that looks like each slice is tumour-free."""
    brain = [k for k, s in enumerate(volume.slices) if is_brain_slice(s)]
    answers = classifier.answer([volume.slices[k] for k in brain], volume.dicom_tags) if brain else []
    shares = neighbours.notumor_share([volume.slices[k] for k in brain]) if neighbours and brain else []
    results = [SliceResult(k, reference[k], max(p, key=p.get), max(p.values()), reason, domain, p, quadrant, share)
               for k, (p, reason, domain, quadrant), share in zip(brain, answers, shares or [None] * len(brain))]
    return {"collection": volume.collection, "volume": volume.volume, "sequence": volume.sequence,
            "slices": len(volume.slices), **summarise(results), **heatmap_hits(results, site),
            "series": series_verdict(results), "per_slice": [result.__dict__ for result in results]}


def volume_sources(external: Path, reference: dict, packaged: bool = True) -> list[tuple[Volume, bool]]:
    """(volume, from a package) for every patient volume under ``external``, then the packaged MRI."""
    collections = {volume: rows[0]["collection"] for (volume, _), rows in reference.items()}
    sources = [(volume, False) for volume in patient_volumes(external, collections)]
    return sources + [(volume, True) for volume in packaged_volumes()] if packaged else sources


def patient_rows(report: dict) -> list[dict]:
    """The report's rows of patient volumes (the targets are theirs; packaged MRI is not held to them)."""
    return [row for row in report["volumes"] if not row["packaged"]]


def run(weights: Path, external: Path, reference_file: Path = REFERENCE_FILE,
        packaged: bool = True, data: Path | None = None) -> dict:
    """Score every patient volume under ``external`` (and the packaged MRI) with ``weights``; with the
    training images at ``data``, each slice's training coverage too (:mod:`training.external_coverage`)."""
    reference, sites = read_reference(reference_file), read_sites()
    classifier = Classifier(weights)
    sources = volume_sources(external, reference, packaged)
    neighbours = training_neighbours(data) if data else None
    rows = []
    for volume, from_package in sources:
        key = (volume.volume, volume.sequence)
        if key not in reference:
            raise ValueError(f"{volume.volume}/{volume.sequence} has no rows in {reference_file.name}")
        row = score_volume(classifier, volume, readings(reference[key], len(volume.slices)),
                           sites.get(volume.volume), neighbours)
        rows.append({"packaged": from_package, **row})
    coverage = {"training_notumor_share": neighbours.base_rate} if neighbours else {}
    return {"model_version": classifier.meta.version, "weights": weights.name, "reference": reference_file.name,
            **coverage, "volumes": rows}


def training_neighbours(data: Path) -> TrainingNeighbours | None:
    """The training split's look features, or None (said in one line) when the images are not at ``data``."""
    if not data.is_dir():
        print(f"training images not at {data}: the report leaves out what the training set holds near each slice")
        return None
    return TrainingNeighbours.from_samples(load_split().samples(data, "train"))


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}"


def table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    """A Markdown table's lines: the header, its rule, one line per row (cells as ``str`` gives them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def markdown_table(report: dict) -> list[str]:
    """One row per volume and sequence: the numbers the model card and the issue compare."""
    header = ("collection", "volume", "sequence", "brain slices", "tumour slices called tumour",
              "tumour-free slices called tumour: all / `in_domain`", "unsure",
              "`notumor` >= 0.9 on tumour slices: all / `in_domain`", "`in_domain: false`", "`is_mri: false`",
              "wrong answers: max / median confidence", "answers", "targets missed")
    rows = []
    for row in report["volumes"]:
        labels = ", ".join(f"{name} {count}" for name, count in row["labels"].items())
        rows.append((row["collection"], row["volume"], row["sequence"], row["brain_slices"],
                 f"{row['tumour_called_tumour']}/{row['tumour_slices']} ({_cell(row['sensitivity'], True)})",
                 (f"{row['tumour_free_called_tumour']} / {row['tumour_free_called_tumour_in_domain']} of "
                  f"{row['tumour_free_slices']} ({_cell(row['false_positive_rate'], True)} / "
                  f"{_cell(row['false_positive_rate_in_domain'], True)})"),
                 row["unsure_slices"],
                 f"{row['confident_notumor_on_tumour']} / {row['confident_notumor_on_tumour_in_domain']}",
                 row["flagged_out_of_domain"], row["flagged_not_mri"],
                 f"{_cell(row['wrong_confidence']['max'])} / {_cell(row['wrong_confidence']['median'])}",
                     labels, _missed(row)))
    return [*table(header, rows), "", (f"Patient brain slices answered `in_domain: false` or `is_mri: false`: "
                   f"{flagged_share(patient_rows(report)):.0%} (target <= {MAX_FLAGGED_SHARE:.0%}).")]


def _missed(row: dict) -> str:
    """The per-volume targets this row misses, by name ("-": none; packaged rows are not held to them)."""
    if row["packaged"]:
        return "n/a"
    return ", ".join(missed_targets(row)) or "-"


def write_report(report: dict, name: str, out: Path = REPORTS) -> tuple[Path, Path]:
    """``external_<name>.json`` and ``external_<name>.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"external_{name}.json", out / f"external_{name}.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    title = f"# External validation of model {report['model_version']} (`python -m training.external`)"
    md_path.write_text("\n".join([title, "", *markdown_table(report), ""]))
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "model_store" / "brain_tumor.safetensors")
    parser.add_argument("--name", default="lite0", help="report name: training/reports/external_<name>.json")
    parser.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL,
                        help="folder of <volume>/<sequence>.nii.gz (default ../shared/data/external)")
    parser.add_argument("--reference", type=Path, default=REFERENCE_FILE)
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT,
                        help="training images, for each slice's nearest training slices (left out when missing)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report = run(args.weights, args.external, args.reference, data=args.data)
    except ExternalDataMissing as exc:
        sys.exit(str(exc))
    for path in write_report(report, args.name):
        print(f"wrote {path}")
    print("\n".join(markdown_table(report)))


if __name__ == "__main__":
    main()
