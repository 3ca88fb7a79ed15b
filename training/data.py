"""Reading ``<root>/<class>/*.{jpg,png}`` into (path, label) samples and torch datasets."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from neuroscan.classes import CLASSES
from neuroscan.preprocess import preprocess

DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared/data/brain-tumor-mri/Training"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Sample:
    """One image file and its class index."""

    path: Path
    label: int


def list_samples(root: str | Path = DEFAULT_ROOT) -> list[Sample]:
    """All images under ``root/<class>/``, in a stable order; unknown folders are an error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in CLASSES)
    if extra:
        raise ValueError(f"unexpected class folders in {root}: {extra}")
    samples = [
        Sample(path, label)
        for label, name in enumerate(CLASSES)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"no images under {root}")
    return samples


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class MriDataset(Dataset):
    """Samples -> (tensor, label); ``augment`` (PIL -> PIL) runs before the shared preprocessing.

    ``relabel`` ((PIL, label) -> (PIL, label)) runs first, for augmentations that change the class
    (:mod:`training.lesions`).

    Images are decoded once and kept in memory: the whole set is a few hundred MB and decoding
    dominates an epoch otherwise. ``extra`` adds in-memory images with their labels (the
    packaged healthy template, :mod:`training.healthy`) after the files.
    """

    def __init__(self, samples: list[Sample], augment: Callable[[Image.Image], Image.Image] | None = None,
                 extra: Sequence[tuple[Image.Image, int]] = (),
                 relabel: Callable[[Image.Image, int], tuple[Image.Image, int]] | None = None):
        self.augment = augment
        self.relabel = relabel
        self._images = [load_rgb(s.path) for s in samples] + [image for image, _ in extra]
        self._labels = [s.label for s in samples] + [label for _, label in extra]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self._images[index], self._labels[index]
        if self.relabel is not None:
            image, label = self.relabel(image, label)
        if self.augment is not None:
            image = self.augment(image)
        return preprocess(image), label

    @property
    def labels(self) -> list[int]:
        return list(self._labels)
