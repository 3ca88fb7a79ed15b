"""Stratified, leakage-aware train/validation split, saved as JSON so every run reuses it.

Near-duplicates (pHash distance <= 4, which includes byte-identical files and adjacent slices
of one scan) are grouped, and whole groups go to one side: a validation image never has a
near-duplicate in training. Groups are stratified by class with scikit-learn's
StratifiedGroupKFold.
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from neuroscan.classes import CLASSES
from training.data import DEFAULT_ROOT, Sample, list_samples
from training.dedup import group_ids, near_duplicate_pairs, phash_file

SPLIT_FILE = Path(__file__).resolve().parent / "split.json"


@dataclass
class Split:
    """Relative paths (``<class>/<file>``) on each side, plus how they were made."""

    train: list[str]
    val: list[str]
    info: dict

    def samples(self, root: str | Path, side: str) -> list[Sample]:
        root = Path(root)
        return [Sample(root / rel, CLASSES.index(rel.split("/")[0])) for rel in getattr(self, side)]


def make_split(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Group near-duplicates, then hold out about ``val_fraction`` of the groups per class."""
    hashes = [phash_file(s.path) for s in samples]
    pairs = near_duplicate_pairs(hashes)
    groups = group_ids(len(samples), pairs)
    labels = np.array([s.label for s in samples])
    folds = StratifiedGroupKFold(n_splits=round(1 / val_fraction), shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(samples)), labels, groups))
    rel = [f"{CLASSES[s.label]}/{s.path.name}" for s in samples]
    info = {
        "seed": seed,
        "val_fraction": val_fraction,
        "near_duplicate_pairs": len(pairs),
        "groups": len(set(groups.tolist())),
        "grouped_images": int(np.sum(np.bincount(groups)[groups] > 1)),
        "hashes": {rel[i]: f"{hashes[i]:016x}" for i in range(len(samples))},
    }
    return Split(sorted(rel[i] for i in train_idx), sorted(rel[i] for i in val_idx), info)


def save_split(split: Split, path: Path = SPLIT_FILE) -> None:
    path.write_text(json.dumps({"train": split.train, "val": split.val, "info": split.info}, indent=1))


def load_split(path: Path = SPLIT_FILE) -> Split:
    data = json.loads(Path(path).read_text())
    return Split(data["train"], data["val"], data["info"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=SPLIT_FILE)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    split = make_split(list_samples(args.data), args.val_fraction, args.seed)
    save_split(split, args.out)
    print(f"train {len(split.train)}  val {len(split.val)}  pairs {split.info['near_duplicate_pairs']}")


if __name__ == "__main__":
    main()
