"""Does the training set hold tumour-free slices that look like an external slice? Its nearest training slices say.

A healthy external slice answered ``pituitary`` may be a model error that more training fixes, or
a gap in the data: if every training slice that looks like it carries a tumour label, no training
on this data set can teach that such a slice is healthy. This module tells the two apart for each
external slice: the share of ``notumor`` among its ``k`` nearest training slices, set against the
share of ``notumor`` in the whole training split.

The neighbours are found in the pooled features of the ImageNet-pretrained Lite0
(:func:`neuroscan.model.create_imagenet_model`), which was never trained on these labels: they
reflect how a slice looks (sequence, level, framing, scanner), not the class the shipped model
gives it. In the shipped model's own features the neighbours of a slice answered ``pituitary``
are ``pituitary`` slices by construction, which would prove nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from neuroscan.classes import CLASSES, NO_TUMOUR
from neuroscan.inference import logits_and_features
from neuroscan.model import create_imagenet_model
from neuroscan.preprocess import preprocess
from training.data import MriDataset, Sample

NOTUMOR = CLASSES.index(NO_TUMOUR)


@dataclass(frozen=True)
class TrainingNeighbours:
    """Unit-length look features of the training slices, their labels, and a feature extractor for new slices."""

    features: torch.Tensor  # (N, D), unit length
    labels: torch.Tensor  # (N,) class indices
    model: torch.nn.Module | None = None  # None: :meth:`notumor_share` takes features, not slices
    k: int = 10

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], k: int = 10) -> "TrainingNeighbours":
        """Look features of every training sample (one to two minutes for the 4,566 on two CPU cores)."""
        model = create_imagenet_model()
        dataset = MriDataset(list(samples))
        features = torch.cat([look_features(model, x) for x, _ in DataLoader(dataset, batch_size=64)])
        return cls(features, torch.tensor(dataset.labels), model, k)

    @property
    def base_rate(self) -> float:
        """Share of ``notumor`` among all training slices: what a neighbourhood holds when look says nothing."""
        return float((self.labels == NOTUMOR).float().mean())

    def notumor_share(self, slices: Sequence[np.ndarray]) -> list[float]:
        """Per 8-bit slice: share of ``notumor`` among its ``k`` nearest training slices."""
        if self.model is None:
            raise ValueError("built from features alone: use notumor_share_of_features")
        batch = torch.stack([preprocess(Image.fromarray(s).convert("RGB")) for s in slices])
        return self.notumor_share_of_features(look_features(self.model, batch))

    def notumor_share_of_features(self, features: torch.Tensor) -> list[float]:
        """As :meth:`notumor_share`, for unit-length look features."""
        nearest = (features @ self.features.T).topk(self.k, dim=1).indices
        return (self.labels[nearest] == NOTUMOR).float().mean(1).tolist()


@torch.no_grad()
def look_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Unit-length pooled features of the ImageNet model (what its classifier reads)."""
    return torch.nn.functional.normalize(logits_and_features(model, batch)[1], dim=1)
