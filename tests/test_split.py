"""The committed split is leakage-free and stratified, checked against the images themselves.

The hashes are recomputed from the files rather than trusted from ``split.json``, so a split
made with a different hash (or on different data) fails here.
"""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from deps import needs

from neuroscan.classes import CLASSES
from training.data import IMAGE_SUFFIXES
from training.dedup import (
    NEAR_DUPLICATE_DISTANCE,
    group_ids,
    hamming_matrix,
    near_duplicate_pairs,
    phash_file,
)
from training.split import Split, load_split

DATA = Path(__file__).resolve().parents[2] / "shared/data/brain-tumor-mri/Training"
needs_data = needs(DATA.is_dir(), f"dataset not found at {DATA}")


@pytest.fixture(scope="module")
def split() -> Split:
    return load_split()


@pytest.fixture(scope="module")
def hashes(split: Split) -> dict[str, int]:
    """pHash of every image in the split, recomputed from the files."""
    return {rel: phash_file(DATA / rel) for rel in split.train + split.val}


def leaks(train: list[int], val: list[int]) -> int:
    """Validation images with a training image within the near-duplicate distance."""
    distances = hamming_matrix(np.asarray(val + train, dtype=np.uint64))[: len(val), len(val):]
    return int((distances.min(axis=1) <= NEAR_DUPLICATE_DISTANCE).sum())


def test_split_covers_the_dataset_once(split: Split) -> None:
    assert not set(split.train) & set(split.val)
    if DATA.is_dir():
        on_disk = {f"{p.parent.name}/{p.name}" for p in DATA.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES}
        assert on_disk == set(split.train) | set(split.val)


@needs_data
def test_recomputed_hashes_match_the_saved_ones(split: Split, hashes: dict[str, int]) -> None:
    saved = {rel: int(value, 16) for rel, value in split.info["hashes"].items()}
    assert saved == hashes


@needs_data
def test_no_validation_image_has_a_near_duplicate_in_training(split: Split, hashes: dict[str, int]) -> None:
    assert leaks([hashes[r] for r in split.train], [hashes[r] for r in split.val]) == 0


@needs_data
def test_a_random_split_would_leak(split: Split, hashes: dict[str, int]) -> None:
    """Negative control: the leak check finds leakage where it exists, so its zero above means something."""
    names = sorted(hashes)
    val = set(np.random.default_rng(0).choice(len(names), size=len(split.val), replace=False).tolist())
    train_h = [hashes[n] for i, n in enumerate(names) if i not in val]
    val_h = [hashes[n] for i, n in enumerate(names) if i in val]
    assert leaks(train_h, val_h) > 50


def test_split_is_stratified(split: Split) -> None:
    train = Counter(rel.split("/")[0] for rel in split.train)
    val = Counter(rel.split("/")[0] for rel in split.val)
    assert set(train) == set(val) == set(CLASSES)
    for name in CLASSES:
        assert 0.15 <= val[name] / (train[name] + val[name]) <= 0.25, name


def test_pairs_and_groups_on_made_up_hashes() -> None:
    """Threshold is inclusive, grouping is transitive, and the top bit of a uint64 is handled."""
    high = 0xF0F0_F0F0_0000_0000  # top bit set: overflows a signed int64
    hashes = [0b0, 0b1111, 0b11111, high, high | 0b1, 0x0000_0000_FFFF_FF00]
    pairs = {tuple(p) for p in near_duplicate_pairs(hashes).tolist()}
    # 0-1 differ in 4 bits (in), 1-2 in 1 bit, 0-2 in 5 bits (out); 3-4 in 1 bit; 5 is 24+ bits from all.
    assert pairs == {(0, 1), (1, 2), (3, 4)}
    groups = group_ids(len(hashes), np.array(sorted(pairs)))
    assert groups[0] == groups[1] == groups[2]  # 0 and 2 joined through 1
    assert groups[3] == groups[4] != groups[0]
    assert len(set(groups.tolist())) == 3


def test_pairs_respect_a_custom_distance() -> None:
    assert near_duplicate_pairs([0b0, 0b111], max_distance=2).size == 0
    assert near_duplicate_pairs([0b0, 0b111], max_distance=3).tolist() == [[0, 1]]
