"""Synthetic masses in tumour-free slices, on a hand-made head (no data set needed)."""

import random

import numpy as np
import torch
from PIL import Image

from neuroscan.classes import CLASSES
from training.data import MriDataset
from training.lesions import (
    GLIOMA,
    NOTUMOR,
    LesionConfig,
    LesionSynthesis,
    brain_region,
    paint_mass,
)

ALWAYS = LesionConfig(p=1.0, halo_p=0.0)


def head(size: int = 224, radius: int = 100) -> np.ndarray:
    """A bright skull ring round an even grey brain, on black."""
    y, x = np.mgrid[:size, :size]
    r = np.hypot(y - size / 2, x - size / 2)
    image = np.zeros((size, size), np.float32)
    image[r < radius] = 230.0
    image[r < radius * 0.88] = 90.0
    return image


def as_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array.astype(np.uint8)).convert("RGB")


def test_a_tumour_free_slice_gets_a_mass_inside_the_brain_and_the_glioma_label():
    source = head()
    brain = brain_region(source)
    synth = LesionSynthesis(ALWAYS)
    for seed in range(10):
        random.seed(seed)
        out, label = synth(as_image(source), NOTUMOR)
        changed = np.abs(np.asarray(out)[..., 0].astype(float) - source) > 20
        assert label == GLIOMA
        assert changed.sum() > 0.001 * source.size
        assert not (changed & ~brain).any(), "nothing painted on the skull ring or the background"


def test_tumour_slices_and_slices_with_too_little_brain_are_left_as_they_are():
    synth = LesionSynthesis(ALWAYS)
    random.seed(0)
    for name in ("glioma", "meningioma", "pituitary"):
        image = as_image(head())
        out, label = synth(image, CLASSES.index(name))
        assert out is image and label == CLASSES.index(name)
    tiny = as_image(head(radius=30))  # a vertex or skull-base slice: almost no brain
    out, label = synth(tiny, NOTUMOR)
    assert out is tiny and label == NOTUMOR
    assert paint_mass(head(radius=30), ALWAYS) is None


def test_the_share_of_slices_given_a_mass_is_p_and_seeded():
    synth = LesionSynthesis(LesionConfig(p=0.2))
    image = as_image(head())
    random.seed(5)
    labels = [synth(image, NOTUMOR)[1] for _ in range(300)]
    random.seed(5)
    assert labels == [synth(image, NOTUMOR)[1] for _ in range(300)]
    assert 0.12 < labels.count(GLIOMA) / len(labels) < 0.28


def test_masses_vary_in_brightness_and_size():
    source = head()
    brain = brain_region(source)
    means, sizes = [], []
    for seed in range(30):
        random.seed(seed)
        painted = paint_mass(source, ALWAYS)
        changed = (np.abs(painted - source) > 20) & brain
        means.append(painted[changed].mean())
        sizes.append(changed.sum())
    assert min(means) < 90 < max(means), "darker and brighter masses than the brain both occur"
    assert max(sizes) > 3 * min(sizes)


def test_expected_counts_move_p_of_no_tumour_to_glioma():
    counts = torch.tensor([100.0, 100.0, 200.0, 100.0])
    moved = LesionSynthesis(LesionConfig(p=0.25)).expected_counts(counts)
    assert moved[NOTUMOR] == 150 and moved[GLIOMA] == 150 and moved.sum() == counts.sum()
    assert counts[NOTUMOR] == 200  # the input is not changed


def test_the_dataset_applies_the_relabelling_before_the_augmentation():
    seen = []

    def augment(image: Image.Image) -> Image.Image:
        seen.append(image.size)
        return image

    def relabel(image: Image.Image, label: int) -> tuple[Image.Image, int]:
        return image.resize((100, 100)), GLIOMA

    dataset = MriDataset([], augment, extra=[(as_image(head()), NOTUMOR)], relabel=relabel)
    tensor, label = dataset[0]
    assert label == GLIOMA and seen == [(100, 100)]
    assert dataset.labels == [NOTUMOR]  # the stored labels are the files', not a draw
    assert tensor.shape[0] == 3
