"""The not-an-MRI check's parts on their own: pixel statistics and the neighbour distance.

How well the whole check separates MRIs from other pictures is measured through the handler in
``test_handler_unit.py``; these tests pin down the pieces it is built from.
"""

import numpy as np
import torch

from neuroscan.mri_check import (
    NeighbourDistance,
    PixelLimits,
    dicom_reason,
    pixel_reason,
    pixel_stats,
)
from neuroscan.weights import ModelMeta, load_weights, save_weights


def slice_like(colour: bool = False) -> np.ndarray:
    """224x224 HWC uint8: a bright disc on black (MRI-like), optionally tinted red."""
    yy, xx = np.mgrid[:224, :224]
    grey = np.where((yy - 112) ** 2 + (xx - 112) ** 2 < 80 ** 2, 180, 0).astype(np.uint8)
    pixels = np.dstack([grey] * 3)
    if colour:
        pixels[..., 0] = np.minimum(255, pixels[..., 0].astype(int) + 90)
    return pixels


def test_grey_shortcut_gives_the_general_formula():
    """Grey uploads skip the colour arithmetic; the numbers must be those of the general path."""
    grey = slice_like()
    colourfulness, contrast, border = pixel_stats(grey)
    sampled = grey[::2, ::2].astype(np.float32)
    assert colourfulness == 0.0
    assert contrast == float(sampled.mean(axis=2).std())
    assert border == 0.0  # the 8-pixel frame is background


def test_pixel_reasons():
    assert pixel_reason(slice_like()) is None
    assert "colour" in pixel_reason(slice_like(colour=True))
    assert "blank" in pixel_reason(np.full((224, 224, 3), 40, np.uint8))
    bright = slice_like()
    bright[bright == 0] = PixelLimits().max_border_brightness + 40
    assert "background" in pixel_reason(bright)



def test_dicom_reasons():
    assert dicom_reason({}) is None  # not a DICOM file: pixels and features decide
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "HEAD"}) is None
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "brain "}) is None
    assert dicom_reason({"Modality": "OT"}) is None  # a secondary capture may be an MRI screenshot
    assert dicom_reason({"Modality": "CR", "BodyPartExamined": "CHEST"}) == "DICOM modality CR: not an MR image"
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "KNEE"}) == "DICOM body part KNEE: not a brain scan"

def clusters(n: int, generator: torch.Generator, centres: torch.Tensor) -> torch.Tensor:
    """Positive 'pooled features' scattered around a few centres, like the four classes'."""
    picks = torch.randint(len(centres), (n,), generator=generator)
    return (centres[picks] + 0.3 * torch.randn(n, centres.shape[1], generator=generator)).relu()


def test_neighbour_distance_separates_new_kinds_of_features(tmp_path):
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(4, 256, generator=generator) * 3
    detector = NeighbourDistance.fit(clusters(800, generator, centres), k=5, dims=32, quantile=0.99)
    held_out = detector.is_outlier(clusters(400, generator, centres)).float().mean()
    strangers = detector.is_outlier(torch.rand(50, 256, generator=generator) * 3).float().mean()
    assert held_out <= 0.03 and strangers == 1.0

    # what the handler loads is what was fitted
    path = save_weights(tmp_path / "m.safetensors", {"w": torch.zeros(1)}, ModelMeta(version="t"),
                        detector.to_extras())
    loaded = NeighbourDistance.from_extras(load_weights(path).extras)
    probe = clusters(20, generator, centres)
    assert torch.equal(loaded.score(probe), detector.score(probe))
    assert NeighbourDistance.from_extras({}) is None
