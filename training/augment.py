"""Training augmentation suited to axial MRI slices.

Mild geometry (small rotations, scale/shift, left-right flip: brains are roughly symmetric
and scanners differ in orientation) and intensity (brightness, contrast, gamma: scanners and
sequences differ). No colour jitter (slices are grey) and no vertical flips (anatomy has a
top and bottom). The output goes through the same eval preprocessing as serving.
"""

import random

import numpy as np
from PIL import Image, ImageEnhance

from neuroscan.spec import DEFAULT_SPEC, ModelSpec


class MriAugment:
    """PIL -> PIL random transform; seeded through Python's ``random`` (set per worker)."""

    def __init__(self, spec: ModelSpec = DEFAULT_SPEC, max_rotation: float = 12.0, min_scale: float = 0.8):
        self.size = spec.input_size
        self.max_rotation = max_rotation
        self.min_scale = min_scale

    def __call__(self, image: Image.Image) -> Image.Image:
        image = self._geometry(image)
        return self._intensity(image)

    def _geometry(self, image: Image.Image) -> Image.Image:
        if random.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.rotate(random.uniform(-self.max_rotation, self.max_rotation), Image.Resampling.BILINEAR)
        scale = random.uniform(self.min_scale, 1.0)
        w, h = image.size
        cw, ch = int(w * scale), int(h * scale)
        left, top = random.randint(0, w - cw), random.randint(0, h - ch)
        return image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))

    def _intensity(self, image: Image.Image) -> Image.Image:
        image = ImageEnhance.Brightness(image).enhance(random.uniform(0.8, 1.2))
        image = ImageEnhance.Contrast(image).enhance(random.uniform(0.8, 1.2))
        gamma = random.uniform(0.8, 1.25)
        lut = (255.0 * (np.arange(256) / 255.0) ** gamma).round().astype(np.uint8)
        return image.point(lut.tolist() * len(image.getbands()))
