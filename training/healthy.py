"""Healthy head slices from packaged templates, added to the no-tumour class.

The data set's no-tumour images come from other collections than its tumour images and cover
few skull-base and vertex levels, so the model learnt that a slice through the sella is a
pituitary tumour and that an unfamiliar framing is a tumour (issue 10). Two templates, installed
with the product's packages and never downloaded, give tumour-free slices at every level in all
three planes; the style randomisation in :mod:`training.augment` turns their T1 contrast into other
sequences' on the fly:

- nilearn's MNI152 2009a T1 (PyPI): an average of 152 healthy adults, skull-stripped;
- Colin27 (``ch2.nii.gz`` in Debian's ``mricron-data``): 27 scans of one healthy adult averaged,
  with skull, scalp and face, from below the skull base to the vertex. Its vertex slices are
  what a tumour-free series ends with, and model 2.1.0 answered them ``meningioma``
  (MODEL_CARD.md, "Colin27 fine-tune").

Nothing else is added; pydicom's MR slice and the external volumes are not trained on.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from neuroscan.classes import CLASSES, NO_TUMOUR
from training.external_sources import colin27_file, mni152_file
from training.external_volumes import (
    is_brain_slice,
    load_nifti,
    to_uint8,
    volume_window,
)

STEP = 2  # every second slice: neighbours 1 mm apart are near-duplicates


# Name -> where the installed volume lies (RAS+ NIfTI); recipes name the ones they train on.
TEMPLATES: dict[str, Callable[[], Path]] = {
    "MNI152 2009a": mni152_file,  # PyPI nilearn
    "Colin27": colin27_file,  # Debian mricron-data
}


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


def template_slices(name: str) -> list[Image.Image]:
    """One template's head slices in three planes, 8-bit RGB, one window for the volume."""
    data = load_nifti(TEMPLATES[name]())
    window = volume_window(data)
    slices = (square(to_uint8(np.ascontiguousarray(s), window)) for s in planes(data))
    return [Image.fromarray(s).convert("RGB") for s in slices if is_brain_slice(s)]


def template_samples(names: tuple[str, ...] | None = None) -> list[tuple[Image.Image, int]]:
    """The named templates' slices (every template's by default), each labelled no-tumour, as
    :class:`training.data.MriDataset` takes extras."""
    names = tuple(TEMPLATES) if names is None else names
    unknown = set(names) - set(TEMPLATES)
    if unknown:
        raise ValueError(f"unknown templates {sorted(unknown)}; known: {list(TEMPLATES)}")
    return [(image, CLASSES.index(NO_TUMOUR)) for name in TEMPLATES if name in names for image in template_slices(name)]
