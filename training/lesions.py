"""Synthetic masses painted into tumour-free training slices, so a lesion in an unfamiliar look is a tumour.

On other collections' scans the 2.0 model answers ``notumor`` on slices through a visible lesion:
a FLAIR-bright low-grade glioma, a T1-dark one, a ring-enhancing metastasis (issue 10). The data
set's tumour slices are mostly post-contrast T1 from other collections than its no-tumour slices,
so "a mass in this slice" is never separated from "this collection's look". Here a tumour-free
slice sometimes gets an intra-axial mass (homogeneous bright or dark, or a bright rim round a dark
core; an oedema halo; a little mass effect) and the label ``glioma``, the data set's intra-axial
tumour class. The style randomisation of :mod:`training.augment` runs afterwards, so the mass is
re-toned with its slice. Randomness is drawn from Python's ``random`` (seeded per worker).
"""

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from neuroscan.classes import CLASSES
from training.augment import HEAD_LEVEL

NOTUMOR, GLIOMA = CLASSES.index("notumor"), CLASSES.index("glioma")


@dataclass(frozen=True)
class LesionConfig:
    """Probabilities and sizes (the model card prints them)."""

    p: float = 0.15  # share of tumour-free slices given a mass
    radius: tuple[float, float] = (0.06, 0.16)  # of the image side
    min_brain_share: float = 0.15  # slices with less brain than this of the image get none
    ring_p: float = 0.3  # bright rim round a dark core (else homogeneous)
    bright_p: float = 0.7  # of the homogeneous ones: brighter than the brain (else darker)
    # Grey levels as multiples of the brain's median, far enough from 1 that a mass is visible before
    # the style randomisation: a glioma label on a slice that still looks tumour-free is label noise
    # (fainter masses cost more validation accuracy, MODEL_CARD.md).
    bright: tuple[float, float] = (1.6, 2.4)
    dark: tuple[float, float] = (0.35, 0.65)
    halo_p: float = 0.5  # a fainter oedema halo round the mass
    mass_effect: float = 0.3  # the most the tissue round the mass is pushed, in mass radii


class LesionSynthesis:
    """(image, label) -> (image, label): with probability ``p`` a tumour-free slice gets a mass and ``glioma``."""

    def __init__(self, config: LesionConfig = LesionConfig()):
        self.config = config

    def __call__(self, image: Image.Image, label: int) -> tuple[Image.Image, int]:
        if label != NOTUMOR or random.random() >= self.config.p:
            return image, label
        grey = np.asarray(image.convert("L"), dtype=np.float32)
        painted = paint_mass(grey, self.config)
        if painted is None:
            return image, label
        return Image.fromarray(np.clip(painted, 0, 255).round().astype(np.uint8)).convert("RGB"), GLIOMA

    def expected_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """Class counts as training sees them on average: a share ``p`` of no-tumour moved to glioma."""
        moved = counts[NOTUMOR] * self.config.p
        counts = counts.clone()
        counts[NOTUMOR] -= moved
        counts[GLIOMA] += moved
        return counts


def brain_region(array: np.ndarray) -> np.ndarray:
    """The head's filled outline shrunk by a tenth of its size: inside the skull, where a glioma grows.

    The head is the largest bright component, so a frame line round some of the data set's pictures
    does not make the whole picture "head".
    """
    components, count = ndimage.label(array > HEAD_LEVEL)
    if count == 0:
        return np.zeros(array.shape, bool)
    sizes = np.bincount(components.ravel())[1:]
    head = ndimage.binary_fill_holes(components == 1 + int(sizes.argmax()))
    depth = max(2, int(0.1 * np.sqrt(head.sum())))
    return ndimage.binary_erosion(head, iterations=depth)


def paint_mass(array: np.ndarray, c: LesionConfig) -> np.ndarray | None:
    """One mass at a random place inside the brain, or None where the slice has too little brain."""
    brain = brain_region(array)
    if brain.sum() < c.min_brain_share * array.size:
        return None
    ys, xs = np.nonzero(brain)
    pick = random.randrange(len(ys))
    centre = (float(ys[pick]), float(xs[pick]))
    radius = random.uniform(*c.radius) * min(array.shape)
    rng = np.random.default_rng(random.getrandbits(32))
    # Weights that fade out at the brain's edge: the skull, scalp and air are never moved or painted.
    inside = ndimage.gaussian_filter(ndimage.binary_erosion(brain, iterations=3).astype(np.float32), 1.5)
    out = blend(array, inside, push_outward(array, centre, radius, random.uniform(0.0, c.mass_effect)))
    distance = shape_distance(array.shape, centre, radius, rng)
    tissue = float(np.median(array[brain]))
    if random.random() < c.halo_p:
        halo = soft_mask(distance, random.uniform(1.4, 2.0), 0.25)
        out = blend(out, halo * inside, tissue * random.uniform(1.15, 1.45))
    margin = random.uniform(1.5, 5.0) / radius
    return blend(out, soft_mask(distance, 1.0, margin) * inside, mass_intensity(distance, tissue, c, rng))


def shape_distance(shape: tuple[int, int], centre: tuple[float, float], radius: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Distance from ``centre`` in units of an irregular, elongated outline's radius (1 on the outline)."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dy, dx = y - centre[0], x - centre[1]
    angle = rng.uniform(0, np.pi)
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = (-dx * np.sin(angle) + dy * np.cos(angle)) / rng.uniform(0.6, 1.0)
    theta = np.arctan2(across, along)
    wobble = 1.0 + sum(rng.uniform(0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.hypot(along, across) / (radius * wobble)


def soft_mask(distance: np.ndarray, extent: float, softness: float) -> np.ndarray:
    """1 inside ``extent`` outline radii, falling to 0 across about ``softness`` radii (a blurred margin)."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - extent) / softness, -50, 50)))


def mass_intensity(distance: np.ndarray, tissue: float, c: LesionConfig, rng: np.random.Generator) -> np.ndarray:
    """The mass's grey levels: a bright rim round a dark core, or a homogeneous bright or dark mass; mottled."""
    if random.random() < c.ring_p:
        rim = random.uniform(0.6, 0.85)  # where the core ends, in outline radii
        bright, dark = tissue * random.uniform(*c.bright), tissue * random.uniform(*c.dark)
        level = np.where(distance < rim, dark, bright)
    else:
        factor = random.uniform(*c.bright) if random.random() < c.bright_p else random.uniform(*c.dark)
        level = np.full(distance.shape, tissue * factor, dtype=np.float32)
    mottle = ndimage.gaussian_filter(rng.normal(0, 1, distance.shape), 2.0)
    return level * (1.0 + 0.15 * mottle / (mottle.std() + 1e-6))


def blend(array: np.ndarray, weight: np.ndarray, value: np.ndarray | float) -> np.ndarray:
    """``value`` where ``weight`` is 1, the slice where it is 0."""
    return array * (1.0 - weight) + weight * value


def push_outward(array: np.ndarray, centre: tuple[float, float], radius: float, strength: float) -> np.ndarray:
    """Tissue near the mass displaced away from it by up to ``strength`` radii (mass effect), fading with distance."""
    if strength <= 0:
        return array
    y, x = np.mgrid[: array.shape[0], : array.shape[1]].astype(np.float32)
    dy, dx = y - centre[0], x - centre[1]
    r = np.hypot(dy, dx) + 1e-3
    shift = strength * radius * np.exp(-((r / (2.0 * radius)) ** 2))
    return ndimage.map_coordinates(array, [y - dy / r * shift, x - dx / r * shift], order=1, mode="nearest")
