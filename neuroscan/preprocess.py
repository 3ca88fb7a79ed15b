"""Eval preprocessing: RGB -> resize -> scale -> normalise, shared by training and serving.

Torch is imported inside the tensor functions only, so the dashboard (which uses
:func:`to_rgb` and :func:`resize` for previews) runs without it. Training's validation loader
calls :func:`preprocess` per image; the TorchServe handler calls :func:`pixels` per image and
:func:`preprocess_batch` per batch, the same arithmetic, so the tensor a served image becomes is
byte-for-byte the one it was evaluated as (``tests/test_preprocess.py``). Kept in NumPy/PIL (no torchvision) so the serving side stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from neuroscan.spec import DEFAULT_SPEC, ModelSpec

if TYPE_CHECKING:
    import torch


# Single-channel modes whose values are not 0..255 grey: 16/32-bit integers and 32-bit floats
# (a 0..1 float TIFF would otherwise convert to an all-black picture).
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale, palette, alpha, 16-bit and float images all become 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES:
        floor = 1e-12 if image.mode == "F" else 1.0
        image = Image.fromarray(_stretch_to_uint8(np.asarray(image, dtype=np.float32), floor), mode="L")
    return image.convert("RGB")


def _stretch_to_uint8(array: np.ndarray, floor: float) -> np.ndarray:
    """Min-max scale to 0..255 (as a DICOM without a stored window is), ignoring NaN and infinities.

    ``floor`` bounds the span from below so a flat slice stays flat: 1 for integer images, tiny
    for floats, whose whole range may lie inside 0..1.
    """
    finite = np.isfinite(array)
    if not finite.any():
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = float(array[finite].min()), float(array[finite].max())
    scaled = (np.where(finite, array, low) - low) / max(high - low, floor) * 255.0
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def resize(image: Image.Image, spec: ModelSpec = DEFAULT_SPEC) -> Image.Image:
    """Fit the longer side to the model's square input (bilinear), centred on black; no-op at the right size.

    Stretching a 256x208 slice to a square would widen every head and lesion in it (scanners store
    non-square matrices); the training slices are square, so they come out as before.
    """
    size = spec.input_size
    if image.size == (size, size):
        return image
    scale = size / max(image.size)
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.Resampling.BILINEAR)
    if fitted.size == (size, size):
        return fitted
    canvas = Image.new(image.mode, (size, size))  # zero: black in every mode
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


def pixels(image: Image.Image, spec: ModelSpec = DEFAULT_SPEC) -> np.ndarray:
    """One decoded image -> the model's input pixels, HWC uint8 (what the not-MRI pixel check reads too)."""
    return np.asarray(resize(to_rgb(image), spec))


def normalise(array: np.ndarray, spec: ModelSpec = DEFAULT_SPEC) -> torch.Tensor:
    """(..., H, W, C) uint8 pixels -> (..., C, H, W) float32 tensor scaled and normalised as the spec says.

    One call per batch: the float arithmetic runs once over the stacked pixels into a channels-first
    buffer (about 5x faster than per image in the handler). The values are exactly
    ``(float32(x) - 255 * mean) / (255 * std)``, whatever the batch shape.
    """
    import torch

    mean = (np.asarray(spec.mean, dtype=np.float32) * 255.0).reshape(3, 1, 1)
    std = (np.asarray(spec.std, dtype=np.float32) * 255.0).reshape(3, 1, 1)
    channels_first = np.ascontiguousarray(np.moveaxis(array, -1, -3))
    out = np.empty(channels_first.shape, dtype=np.float32)
    np.subtract(channels_first, mean, out=out)
    np.divide(out, std, out=out)
    return torch.from_numpy(out)


def preprocess(image: Image.Image, spec: ModelSpec = DEFAULT_SPEC) -> torch.Tensor:
    """One decoded image -> the model's input tensor (C, H, W)."""
    return normalise(pixels(image, spec), spec)


def preprocess_batch(batch: list[np.ndarray], spec: ModelSpec = DEFAULT_SPEC) -> torch.Tensor:
    """Pixels from :func:`pixels` -> one (N, C, H, W) input batch, equal to stacking :func:`preprocess`."""
    return normalise(np.stack(batch), spec)
