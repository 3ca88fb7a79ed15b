"""Is this upload a brain MRI slice at all? Two cheap pixel checks, then a feature distance.

A classifier always answers with one of its four classes, even for a cat photo, so serving
needs a separate "not an MRI" signal:

1. pixel statistics: MRI slices are grey (channels agree) and not blank;
2. the distance of the classifier's pooled features from the training distribution: a
   Mahalanobis distance in a PCA subspace plus the residual off that subspace, fitted on the
   training split and thresholded at a high training percentile.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class PixelLimits:
    """Thresholds on 8-bit RGB statistics (measured on the training images, with margin)."""

    max_colourfulness: float = 12.0
    min_contrast: float = 8.0
    # MRI slices sit on a dark background: the mean of an 8-pixel border frame (at 112 px) is
    # below 64 for 99% of validation slices and above 100 for most photos, documents and scans.
    max_border_brightness: float = 80.0


def pixel_stats(image: Image.Image, frame: int = 8) -> tuple[float, float, float]:
    """(colourfulness, contrast, border): mean |channel - grey|, grey std, mean grey of the frame."""
    array = np.asarray(image.convert("RGB").resize((112, 112)), dtype=np.float32)
    grey = array.mean(axis=2, keepdims=True)
    border = np.concatenate([grey[:frame].ravel(), grey[-frame:].ravel(), grey[:, :frame].ravel(), grey[:, -frame:].ravel()])
    return float(np.abs(array - grey).mean()), float(grey.std()), float(border.mean())


def pixel_reason(image: Image.Image, limits: PixelLimits = PixelLimits()) -> str | None:
    """Why the pixels alone rule out an MRI slice, or ``None`` if they do not."""
    colourfulness, contrast, border = pixel_stats(image)
    if colourfulness > limits.max_colourfulness:
        return "colour image: MRI slices are greyscale"
    if contrast < limits.min_contrast:
        return "blank or nearly uniform image"
    if border > limits.max_border_brightness:
        return "bright background: MRI slices sit on a dark background"
    return None


@dataclass
class FeatureDistance:
    """Distance of pooled features from the training feature distribution."""

    mean: torch.Tensor  # (D,)
    components: torch.Tensor  # (K, D) orthonormal rows
    scales: torch.Tensor  # (K,) std along each component
    residual_scale: torch.Tensor  # () rms residual off the subspace
    threshold: torch.Tensor  # () score above which features are out of distribution

    @classmethod
    def fit(cls, features: torch.Tensor, k: int = 64, quantile: float = 0.998) -> "FeatureDistance":
        """Fit on training features; the threshold is their ``quantile``-th score, times a margin."""
        features = features.double()
        mean = features.mean(0)
        centred = features - mean
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        components = vh[:k]
        scales = singular[:k] / max(len(features) - 1, 1) ** 0.5
        residual = centred - (centred @ components.T) @ components
        residual_scale = residual.pow(2).sum(1).mean().sqrt()
        fitted = cls(mean, components, scales, residual_scale, torch.tensor(0.0, dtype=torch.float64))
        scores = fitted.score(features)
        fitted.threshold = torch.quantile(scores, quantile) * 1.5
        return fitted.to_float()

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Per-row score: mean squared whitened projection + squared relative residual."""
        centred = features.to(self.mean.dtype) - self.mean
        projected = centred @ self.components.T
        mahalanobis = (projected / self.scales).pow(2).mean(1)
        residual = centred - projected @ self.components
        return mahalanobis + residual.pow(2).sum(1) / self.residual_scale.pow(2)

    def is_outlier(self, features: torch.Tensor) -> torch.Tensor:
        return self.score(features) > self.threshold

    def to_float(self) -> "FeatureDistance":
        return FeatureDistance(*(t.float() for t in self.to_extras().values()))

    def to_extras(self) -> dict[str, torch.Tensor]:
        """Tensors to store in the weight file (under ``extra.ood.*``)."""
        names = ("mean", "components", "scales", "residual_scale", "threshold")
        return {f"ood.{n}": getattr(self, n) for n in names}

    @classmethod
    def from_extras(cls, extras: dict[str, torch.Tensor]) -> "FeatureDistance | None":
        """Rebuild from a weight file's extras; ``None`` if the file has none."""
        names = ("mean", "components", "scales", "residual_scale", "threshold")
        if not all(f"ood.{n}" in extras for n in names):
            return None
        return cls(*(extras[f"ood.{n}"].float() for n in names))
