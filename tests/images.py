"""Images made on the spot, for tests that must run anywhere (no dataset needed)."""

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def synthetic_slice(seed: int = 0, size: int = 224) -> Image.Image:
    """A grey, roughly brain-shaped blob: decodes like an MRI slice (not a real one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    head = ((x / 0.38) ** 2 + (y / 0.45) ** 2 < 1).astype(np.float32)
    texture = rng.normal(0.5, 0.15, (size, size)).clip(0, 1)
    return Image.fromarray((head * texture * 255).astype(np.uint8), mode="L")


def noise_image(seed: int = 0, size: int = 224) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))
