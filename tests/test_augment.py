"""The style-randomising augmentation, step by step on hand-made slices (no data set needed)."""

import random

import numpy as np
import pytest
from PIL import Image

from training.augment import (
    HEAD_LEVEL,
    AugmentConfig,
    MriAugment,
    bias_field,
    invert_head,
    skull_strip,
    tone_curve,
    zoom_out,
)


def phantom(size: int = 224) -> np.ndarray:
    """A head: a bright 'skull' ring around darker 'brain' with a brighter 'lesion', on black."""
    y, x = np.mgrid[:size, :size]
    radius = np.hypot(y - size / 2, x - size / 2)
    image = np.zeros((size, size), np.float32)
    image[radius < 100] = 230.0  # skull and scalp
    image[radius < 88] = 90.0  # brain
    image[np.hypot(y - 90, x - 130) < 12] = 160.0  # lesion
    return image


def test_every_output_is_a_grey_rgb_slice_of_the_model_size_and_seeded():
    augment = MriAugment()
    source = Image.fromarray(phantom(300).astype(np.uint8)).convert("RGB")
    random.seed(3)
    first = [np.asarray(augment(source)) for _ in range(20)]
    random.seed(3)
    again = [np.asarray(augment(source)) for _ in range(20)]
    for out, same in zip(first, again):
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert np.array_equal(out, same)
    assert len({out.tobytes() for out in first}) == 20


def test_mild_only_when_style_is_off_keeps_the_background_black_and_the_head_recognisable():
    augment = MriAugment(config=AugmentConfig(style_p=0.0, zoom_out_p=0.0, max_rotation=0.0, min_crop=1.0))
    random.seed(0)
    out = np.asarray(augment(Image.fromarray(phantom().astype(np.uint8))))[..., 0].astype(float)
    assert out[:5, :5].max() == 0
    assert out[112, 112] < out[112, 112 - 95]  # brain still darker than the skull ring


def test_zoom_out_puts_the_whole_picture_on_a_black_canvas():
    random.seed(1)
    white = Image.new("L", (100, 100), 255)
    out = np.asarray(zoom_out(white, 0.6))
    assert out.shape == (100, 100)
    assert (out == 255).sum() == 60 * 60 and (out == 0).sum() == 100 * 100 - 60 * 60


def test_skull_strip_removes_the_outer_ring_and_keeps_the_brain_and_lesion():
    image = phantom()
    stripped, head = skull_strip(image, image > HEAD_LEVEL, depth=14)
    assert stripped[112, 112 - 95] == 0  # in the skull ring
    assert stripped[112, 112] == 90 and stripped[90, 130] == 160
    assert not head[112, 112 - 95] and head[112, 112]


def test_inverting_the_head_swaps_tissue_order_and_keeps_the_background():
    image = phantom()
    inverted = invert_head(image, image > HEAD_LEVEL)
    assert inverted[0, 0] == 0
    assert inverted[112, 112] > inverted[90, 130] > inverted[112, 112 - 95] > HEAD_LEVEL


@pytest.mark.parametrize("non_monotonic", [False, True])
def test_tone_curves_keep_black_black_and_the_head_visible(non_monotonic):
    image = phantom()
    head = image > HEAD_LEVEL
    for seed in range(20):
        random.seed(seed)
        mapped = tone_curve(image, head, non_monotonic)
        assert mapped[0, 0] == 0
        assert mapped[head].min() > HEAD_LEVEL and mapped.max() <= 255


def test_monotonic_tone_curves_keep_the_tissue_order():
    image = phantom()
    for seed in range(20):
        random.seed(seed)
        mapped = tone_curve(image, image > HEAD_LEVEL, non_monotonic=False)
        assert mapped[112, 112] <= mapped[90, 130] <= mapped[112, 112 - 95]


def test_bias_field_is_smooth_positive_and_bounded():
    random.seed(2)
    field = bias_field((224, 224), 0.35)
    assert field.min() > np.exp(-0.35 * 1.5) and field.max() < np.exp(0.35 * 1.5)
    assert np.abs(np.diff(field, axis=0)).max() < 0.02  # no edges: a shading, not a pattern
