"""Healthy brain slices from a template shipped in a PyPI package, added to the no-tumour class.

The data set's no-tumour images come from other collections than its tumour images and cover
few skull-base and vertex levels, so the model learnt that a slice through the sella is a
pituitary tumour and that an unfamiliar framing is a tumour (issue 10). nilearn's MNI152 2009
T1 template (an average of 152 healthy adults, installed with nilearn, nothing downloaded) gives
tumour-free slices at every level in all three planes; the style randomisation in
:mod:`training.augment` turns its T1 contrast into other sequences' on the fly.

The template is the only addition; pydicom's MR slice and the external volumes are not trained on.
"""

from collections.abc import Iterator

import numpy as np
from PIL import Image

from neuroscan.classes import CLASSES, NO_TUMOUR
from training.external_sources import MNI152_FILE, package_file
from training.external_volumes import (
    is_brain_slice,
    load_nifti,
    to_uint8,
    volume_window,
)

STEP = 2  # every second slice: neighbours 1 mm apart are near-duplicates


def planes(data: np.ndarray) -> Iterator[np.ndarray]:
    """Axial, coronal and sagittal slices of an RAS+ volume, superior or anterior up, right on the left."""
    for k in range(0, data.shape[2], STEP):
        yield data[:, :, k].T[::-1, ::-1]
    for j in range(0, data.shape[1], STEP):
        yield data[:, j, :].T[::-1, ::-1]
    for i in range(0, data.shape[0], STEP):
        yield data[i, :, :].T[::-1, :]


def square(slice_8bit: np.ndarray) -> np.ndarray:
    """Pad to a centred square on black, as a scanner's square field of view shows the head."""
    h, w = slice_8bit.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = slice_8bit
    return out


def template_slices() -> list[Image.Image]:
    """The MNI152 template's brain slices in three planes, 8-bit RGB, one window for the volume."""
    data = load_nifti(package_file("nilearn", MNI152_FILE))
    window = volume_window(data)
    slices = (square(to_uint8(np.ascontiguousarray(s), window)) for s in planes(data))
    return [Image.fromarray(s).convert("RGB") for s in slices if is_brain_slice(s)]


def template_samples() -> list[tuple[Image.Image, int]]:
    """:func:`template_slices`, each labelled no-tumour, as :class:`training.data.MriDataset` takes extras."""
    return [(image, CLASSES.index(NO_TUMOUR)) for image in template_slices()]
