"""External MRI volumes as the slices a PACS or PNG export would show a clinician.

The external set comes as NIfTI volumes, the product sees 8-bit slices. This module makes that
step explicit and testable, because the answer depends on it:

- orientation: the volume is reoriented to RAS+ (``nib.as_closest_canonical``) and axial slice
  ``k`` is shown as radiologists view it, ``data[:, :, k].T[::-1, ::-1]`` (anterior up, the
  patient's right on the image's left, ``k`` from inferior to superior);
- window: one window per volume, as a scanner stores one window for a series: the 0.5th to the
  99.5th percentile of the volume's non-zero voxels goes to 0..255 (clipped), so a bright
  enhancing rim saturates as in a clinical window instead of darkening every other slice;
- brain slice: a slice counts when at least :data:`MIN_HEAD_FRACTION` of its pixels are head
  (8-bit value above :data:`HEAD_LEVEL`, a tenth of the window): the caps at the skull base and
  the vertex, where a few percent of the picture is tissue, are not slices anyone uploads.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WINDOW_PERCENTILES = (0.5, 99.5)
HEAD_LEVEL = 25  # 8-bit grey above which a pixel is head, not background (10% of the window)
MIN_HEAD_FRACTION = 0.10


@dataclass(frozen=True)
class Volume:
    """One sequence of one patient (or template), axial slices ready for the model."""

    collection: str
    volume: str
    sequence: str
    slices: list[np.ndarray]  # 8-bit greyscale, radiological view, k = 0 is the most inferior
    dicom_tags: dict[str, str] = field(default_factory=dict)  # what the header check reads (DICOM only)


def load_nifti(path: Path) -> np.ndarray:
    """The voxel array of a NIfTI file, reoriented to RAS+ (float32)."""
    import nibabel as nib  # only the external runner needs it

    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj, dtype=np.float32)


def radiological_slice(data: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of an RAS+ array: rows run anterior->posterior, columns patient right->left."""
    return data[:, :, k].T[::-1, ::-1]


def volume_window(data: np.ndarray) -> tuple[float, float]:
    """The (low, high) display window of a volume: percentiles of its non-zero voxels."""
    tissue = data[data > 0]
    if tissue.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(tissue, WINDOW_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def to_uint8(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``window`` to 0..255 the way the DICOM decoder does (clip, scale, round)."""
    low, high = window
    return (np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def axial_slices(data: np.ndarray) -> list[np.ndarray]:
    """Every axial slice of an RAS+ volume, inferior first, windowed to 8 bits."""
    window = volume_window(data)
    return [np.ascontiguousarray(to_uint8(radiological_slice(data, k), window)) for k in range(data.shape[2])]


def head_fraction(slice_8bit: np.ndarray) -> float:
    """Share of the picture that is head rather than background."""
    return float((slice_8bit > HEAD_LEVEL).mean())


def is_brain_slice(slice_8bit: np.ndarray) -> bool:
    """Enough head in the picture to be a slice a clinician would upload (see module docstring)."""
    return head_fraction(slice_8bit) >= MIN_HEAD_FRACTION
