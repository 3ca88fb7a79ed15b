"""Training augmentation for axial MRI slices: mild geometry, and style randomised so the source cannot decide.

The data set's classes come from different collections (the no-tumour class mostly from others
than the tumour classes), so scanner style, sequence and framing separate its classes better
than the tumour does, and a model trained on it calls a FLAIR lesion ``notumor`` (issue 10).
This augmentation takes those cues away from every class alike:

- geometry: left-right flip, small rotations, crops, and zoom-out onto a black canvas, so small
  heads and skull-base / vertex framings occur in every class (no vertical flips: anatomy has a
  top and a bottom);
- skull strip: sometimes the scalp and skull ring is cut away, as in skull-stripped research data;
- intensity: a random smooth tone curve, sometimes non-monotonic (grey/white/CSF contrast
  reordered, as between T1, T2 and FLAIR), or the head's contrast inverted; gamma, a multiplicative
  bias field, blur, noise, lower resolution and histogram equalisation.

Style changes fire with probability :attr:`AugmentConfig.style_p` per image; the rest keeps the
mild 1.x augmentation so the in-distribution look is still seen. The output goes through the same
eval preprocessing as serving. Randomness is drawn from Python's ``random`` (seeded per worker).
"""

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from scipy import ndimage

from neuroscan.spec import DEFAULT_SPEC, ModelSpec

HEAD_LEVEL = 20  # 8-bit grey above which a pixel is head rather than background


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of every step (the model card prints them)."""

    max_rotation: float = 15.0
    min_crop: float = 0.8  # crop side as a share of the image
    zoom_out_p: float = 0.3
    min_zoom_out: float = 0.6  # the head's side on the canvas, as a share of the canvas
    style_p: float = 0.8  # share of images whose style is randomised (the rest: mild changes only)
    skull_strip_p: float = 0.25
    tone_curve_p: float = 0.5
    non_monotonic_p: float = 0.3  # of the tone curves
    invert_p: float = 0.1
    gamma: tuple[float, float] = (0.6, 1.7)
    bias_field_p: float = 0.4
    bias_strength: float = 0.35
    blur_p: float = 0.2
    noise_p: float = 0.3
    max_noise: float = 12.0  # 8-bit grey standard deviation
    low_resolution_p: float = 0.2
    equalise_p: float = 0.1


class MriAugment:
    """PIL -> PIL random transform of one training slice."""

    def __init__(self, spec: ModelSpec = DEFAULT_SPEC, config: AugmentConfig = AugmentConfig()):
        self.size = spec.input_size
        self.config = config

    def __call__(self, image: Image.Image) -> Image.Image:
        grey = self._geometry(image.convert("L"))
        grey = self._style(grey) if random.random() < self.config.style_p else mild_intensity(grey)
        return grey.convert("RGB")

    def _geometry(self, image: Image.Image) -> Image.Image:
        c = self.config
        if random.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.rotate(random.uniform(-c.max_rotation, c.max_rotation), Image.Resampling.BILINEAR)
        image = random_crop(image, random.uniform(c.min_crop, 1.0), self.size)
        if random.random() < c.zoom_out_p:
            image = zoom_out(image, random.uniform(c.min_zoom_out, 0.95))
        return image

    def _style(self, image: Image.Image) -> Image.Image:
        c = self.config
        array = np.asarray(image, dtype=np.float32)
        head = array > HEAD_LEVEL
        if random.random() < c.skull_strip_p:
            array, head = skull_strip(array, head, random.randint(6, 18))
        if random.random() < c.invert_p:
            array = invert_head(array, head)
        elif random.random() < c.tone_curve_p:
            array = tone_curve(array, head, non_monotonic=random.random() < c.non_monotonic_p)
        array = 255.0 * (array / 255.0) ** random.uniform(*c.gamma)
        if random.random() < c.bias_field_p:
            array = array * bias_field(array.shape, c.bias_strength)
        if random.random() < c.low_resolution_p:
            array = low_resolution(array, random.uniform(0.35, 0.8))
        if random.random() < c.blur_p:
            array = ndimage.gaussian_filter(array, random.uniform(0.5, 1.5))
        if random.random() < c.noise_p:
            array = array + np.random.default_rng(random.getrandbits(32)).normal(
                0.0, random.uniform(2.0, c.max_noise), array.shape)
        out = Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8))
        return ImageOps.equalize(out) if random.random() < c.equalise_p else out


def mild_intensity(image: Image.Image) -> Image.Image:
    """Brightness, contrast and gamma within +/-20-25%: the 1.x augmentation."""
    image = ImageEnhance.Brightness(image).enhance(random.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(random.uniform(0.8, 1.2))
    gamma = random.uniform(0.8, 1.25)
    return image.point((255.0 * (np.arange(256) / 255.0) ** gamma).round().astype(np.uint8).tolist())


def random_crop(image: Image.Image, share: float, size: int) -> Image.Image:
    """A random square-ish window of ``share`` of each side, resized to ``size``."""
    w, h = image.size
    cw, ch = int(w * share), int(h * share)
    left, top = random.randint(0, w - cw), random.randint(0, h - ch)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def zoom_out(image: Image.Image, share: float) -> Image.Image:
    """The image shrunk to ``share`` of its side and placed at random on a black canvas of the same size."""
    w, h = image.size
    small = image.resize((max(1, int(w * share)), max(1, int(h * share))), Image.Resampling.BILINEAR)
    canvas = Image.new(image.mode, image.size)
    canvas.paste(small, (random.randint(0, w - small.width), random.randint(0, h - small.height)))
    return canvas


def skull_strip(array: np.ndarray, head: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``depth`` pixels off the head's outline (filled, so ventricles stay): scalp and skull go."""
    inner = ndimage.binary_erosion(ndimage.binary_fill_holes(head), iterations=depth)
    return np.where(inner, array, 0.0), inner & head


def invert_head(array: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Dark tissue bright and bright tissue dark inside the head; the background stays black."""
    if not head.any():
        return array
    top = float(array[head].max())
    return np.where(head, top + HEAD_LEVEL + 1.0 - array, 0.0)


def tone_curve(array: np.ndarray, head: np.ndarray, non_monotonic: bool) -> np.ndarray:
    """A random piecewise-linear grey mapping over the head's range, black kept black.

    Monotonic curves change contrast like another scanner's window; non-monotonic ones reorder
    tissue brightness like another sequence does.
    """
    knots = np.linspace(0.0, 255.0, 6)
    values = np.sort(np.random.default_rng(random.getrandbits(32)).uniform(0, 255, len(knots)))
    if non_monotonic:
        values[1:] = np.random.default_rng(random.getrandbits(32)).permutation(values[1:])
    values[0] = 0.0
    mapped = np.interp(array, knots, values)
    return np.where(head, np.maximum(mapped, HEAD_LEVEL + 1.0), mapped)


def bias_field(shape: tuple[int, int], strength: float) -> np.ndarray:
    """A smooth multiplicative field exp(quadratic in x, y) of up to about +/-``strength``, as coil shading."""
    rng = np.random.default_rng(random.getrandbits(32))
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    a = rng.uniform(-1, 1, 5) * strength / 2
    return np.exp(a[0] * x + a[1] * y + a[2] * x * y + a[3] * x**2 + a[4] * y**2)


def low_resolution(array: np.ndarray, share: float) -> np.ndarray:
    """Down- then up-sample: the blur of a coarser acquisition matrix."""
    h, w = array.shape
    small = Image.fromarray(array).resize((max(8, int(w * share)), max(8, int(h * share))), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
