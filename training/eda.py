"""Exploratory data analysis of the training images: what the model learns from, and its traps.

    python -m training.eda --data <root>

Writes ``training/reports/eda.md`` plus figures next to it: class balance, a grid of samples
per class, image sizes and modes, duplicate statistics (byte-identical files by SHA-256 and
pHash near-duplicates, the reason the split groups images) and the saved split per class.
The output has no timestamps, so re-running on the same data gives the same files.
"""

import argparse
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from neuroscan.classes import CLASSES
from training.data import DEFAULT_ROOT, Sample, list_samples
from training.dedup import (
    NEAR_DUPLICATE_DISTANCE,
    group_ids,
    near_duplicate_pairs,
    phash,
)
from training.split import SPLIT_FILE, Split, load_split

REPORTS = Path(__file__).resolve().parent / "reports"
SAMPLES_PER_CLASS = 6


@dataclass(frozen=True)
class ImageInfo:
    """What one file is: its class, pixel size, Pillow mode, content hash and perceptual hash."""

    rel: str
    label: int
    size: tuple[int, int]
    mode: str
    sha256: str
    phash: int


def inspect(sample: Sample) -> ImageInfo:
    """Read the file once and derive every per-image fact from those bytes."""
    data = sample.path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        rel = f"{CLASSES[sample.label]}/{sample.path.name}"
        return ImageInfo(rel, sample.label, image.size, image.mode, hashlib.sha256(data).hexdigest(), phash(image))


@dataclass
class DuplicateStats:
    """Exact and near-duplicate counts, and where duplicates cross classes (possible label errors)."""

    exact_groups: int
    exact_files: int
    exact_redundant: int
    exact_cross_class: int
    near_pairs: int
    near_groups: int
    near_grouped_images: int
    near_largest_group: int
    near_cross_class: int
    cross_class_pairs: list[tuple[str, str, int]]
    total_groups: int


def _multi_groups(keys: list) -> list[list[int]]:
    """Indices sharing a key, for keys held by more than one image."""
    members: dict = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    return [m for m in members.values() if len(m) > 1]


def duplicate_stats(infos: list[ImageInfo]) -> DuplicateStats:
    """Count byte-identical groups (SHA-256) and pHash groups (connected pairs within the distance)."""
    labels = [info.label for info in infos]
    exact = _multi_groups([info.sha256 for info in infos])
    pairs = near_duplicate_pairs([info.phash for info in infos])
    groups = group_ids(len(infos), pairs)
    near = _multi_groups(groups.tolist())

    def cross_class(sets: list[list[int]]) -> int:
        return sum(len({labels[i] for i in members}) > 1 for members in sets)

    conflicts = [(infos[i].rel, infos[j].rel, (infos[i].phash ^ infos[j].phash).bit_count())
                 for i, j in pairs.tolist() if labels[i] != labels[j]]
    return DuplicateStats(
        exact_groups=len(exact),
        exact_files=sum(len(m) for m in exact),
        exact_redundant=sum(len(m) - 1 for m in exact),
        exact_cross_class=cross_class(exact),
        near_pairs=len(pairs),
        near_groups=len(near),
        near_grouped_images=sum(len(m) for m in near),
        near_largest_group=max((len(m) for m in near), default=1),
        near_cross_class=cross_class(near),
        cross_class_pairs=sorted(conflicts, key=lambda c: (c[2], c[0], c[1])),
        total_groups=len(set(groups.tolist())),
    )


def plot_class_balance(counts: list[int], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bars = ax.bar(CLASSES, counts, color="#4c72b0")
    ax.bar_label(bars)
    ax.set_ylabel("images")
    ax.set_title("Images per class (training set)")
    ax.set_ylim(0, max(counts) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sample_grid(samples: list[Sample], path: Path, per_class: int = SAMPLES_PER_CLASS) -> None:
    """Evenly spaced files per class (not random, so the figure is reproducible)."""
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(1.8 * per_class, 1.9 * len(CLASSES)))
    for row, name in enumerate(CLASSES):
        members = [s for s in samples if s.label == row]
        picks = [members[i] for i in np.linspace(0, len(members) - 1, per_class).round().astype(int)]
        for col, sample in enumerate(picks):
            ax = axes[row, col]
            with Image.open(sample.path) as image:
                ax.imshow(image.convert("L").resize((160, 160)), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name)
    fig.suptitle("Samples per class")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _balance_section(counts: list[int]) -> list[str]:
    total = sum(counts)
    rows = [(name, n, f"{n / total:.1%}") for name, n in zip(CLASSES, counts)]
    return ["## Class balance", "", (f"{total:,} images in {len(CLASSES)} classes; the largest class is "
            f"{max(counts) / min(counts):.2f}x the smallest, mild enough that plain cross-entropy "
            "(no re-weighting) is used."), "", *_table(("class", "images", "share"), rows), "",
            "![class balance](eda_class_balance.png)", "", "![samples](eda_samples.png)", ""]


def _format_section(infos: list[ImageInfo], top: int = 10) -> list[str]:
    sizes = Counter(info.size for info in infos)
    modes = Counter(info.mode for info in infos)
    size_rows = [(f"{w}x{h}", n) for (w, h), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    widths = [info.size[0] for info in infos]
    heights = [info.size[1] for info in infos]
    return ["## Image sizes and modes", "",
            (f"{len(sizes)} distinct size(s); width {min(widths)}-{max(widths)} px (median {int(np.median(widths))}), "
            f"height {min(heights)}-{max(heights)} px (median {int(np.median(heights))}). The shared preprocessing "
            "converts every image to RGB and resizes it to the model's input, so greyscale and RGB files (and "
            "any other size) reach the model in the same form."),
            "", f"Most common sizes (top {min(top, len(sizes))}):", "", *_table(("size (WxH)", "images"), size_rows),
            "", *_table(("Pillow mode", "images"), sorted(modes.items())), ""]


def _duplicate_section(stats: DuplicateStats, split: Split) -> list[str]:
    recorded = split.info.get("near_duplicate_pairs")
    agreement = ("matches" if recorded == stats.near_pairs else f"differs from the {recorded} recorded in")
    rows = [
        ("byte-identical groups (SHA-256)", stats.exact_groups),
        ("files in those groups", stats.exact_files),
        ("redundant copies (files minus groups)", stats.exact_redundant),
        ("byte-identical groups spanning two classes", stats.exact_cross_class),
        (f"pHash pairs within distance {NEAR_DUPLICATE_DISTANCE}", stats.near_pairs),
        ("near-duplicate groups (2+ images)", stats.near_groups),
        ("images in those groups", stats.near_grouped_images),
        ("largest group", stats.near_largest_group),
        ("near-duplicate groups spanning two classes (via chains of pairs)", stats.near_cross_class),
        ("near-duplicate pairs of two different classes", len(stats.cross_class_pairs)),
        ("split units (groups incl. singletons)", stats.total_groups),
    ]
    return ["## Duplicates", "",
            ("The public dataset contains byte-identical copies and near-identical slices (adjacent slices of "
            "one scan, re-encoded copies). A random split would put one copy in training and another in "
            "validation and overstate accuracy, so the split keeps each pHash group whole (64-bit DCT pHash, "
            f"Hamming distance <= {NEAR_DUPLICATE_DISTANCE}; byte-identical files have distance 0)."), "",
            *_table(("measure", "count"), rows), "",
            f"The pair count {agreement} `training/split.json`.", "", *_conflict_lines(stats.cross_class_pairs)]


def _conflict_lines(pairs: list[tuple[str, str, int]], shown: int = 10) -> list[str]:
    """Near-duplicates filed under different classes: label errors would show up here first."""
    if not pairs:
        return []
    by_distance = ", ".join(f"{n} at distance {d}" for d, n in sorted(Counter(p[2] for p in pairs).items()))
    rows = [(f"`{a}`", f"`{b}`", d) for a, b, d in pairs[:shown]]
    return [(f"Pairs of different classes within the distance: {by_distance}. A pHash of a 32x32 thumbnail is "
            "coarse, so such pairs are usually different scans with a similar layout rather than relabelled "
            "copies (the closest ones here were checked by eye); grouping them only makes the split more "
            f"conservative. The {len(rows)} closest:"), "", *_table(("image", "image", "distance"), rows), ""]


def _split_section(split: Split) -> list[str]:
    train = Counter(rel.split("/")[0] for rel in split.train)
    val = Counter(rel.split("/")[0] for rel in split.val)
    rows = [(name, train[name], val[name], f"{val[name] / (train[name] + val[name]):.1%}") for name in CLASSES]
    total = len(split.train) + len(split.val)
    rows.append(("total", len(split.train), len(split.val), f"{len(split.val) / total:.1%}"))
    return ["## Split (training/split.json)", "",
            ("StratifiedGroupKFold (5 folds, one held out) over the pHash groups: about 80/20 per class, and no "
            "validation image has a near-duplicate in training."), "",
            *_table(("class", "train", "val", "val share"), rows), ""]


def render(infos: list[ImageInfo], stats: DuplicateStats, split: Split) -> str:
    counts = [sum(info.label == k for info in infos) for k in range(len(CLASSES))]
    lines = ["# NeuroScan training data: exploratory analysis", "",
             "Generated by `python -m training.eda`; Brain Tumor MRI Dataset (Kaggle, CC0), `Training/` folder.", "",
             *_balance_section(counts), *_format_section(infos), *_duplicate_section(stats, split),
             *_split_section(split)]
    return "\n".join(lines)


def run(root: Path, split_path: Path = SPLIT_FILE, out: Path = REPORTS) -> str:
    """Inspect every image under ``root`` and write the report and figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    samples = list_samples(root)
    infos = [inspect(sample) for sample in samples]
    plot_class_balance([sum(i.label == k for i in infos) for k in range(len(CLASSES))], out / "eda_class_balance.png")
    plot_sample_grid(samples, out / "eda_samples.png")
    text = render(infos, duplicate_stats(infos), load_split(split_path))
    (out / "eda.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--split", type=Path, default=SPLIT_FILE)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    print(run(args.data, args.split, args.out))


if __name__ == "__main__":
    main()
