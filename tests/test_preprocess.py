"""Training and serving turn an image file into the same tensor, bit for bit.

The validation numbers in the model card only describe the served model if the handler's
path (bytes -> ``decode_image`` -> ``pixels`` -> ``preprocess_batch``) equals training's eval
dataset (``preprocess`` per image) exactly;
any drift (another resize filter, a colour conversion) would break ``torch.equal`` here.
"""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from deps import needs
from PIL import Image

from neuroscan.imaging import decode_image
from neuroscan.preprocess import pixels, preprocess_batch, resize, to_rgb
from training.data import MriDataset, Sample, list_samples

DATA = Path(__file__).resolve().parents[2] / "shared/data/brain-tumor-mri/Training"
needs_data = needs(DATA.is_dir(), f"dataset not found at {DATA}")


def handler_batch(files: list[bytes]) -> torch.Tensor:
    """What the TorchServe handler feeds the model for a batch of uploaded files."""
    return preprocess_batch([pixels(decode_image(data).image) for data in files])


def assert_parity(samples: list[Sample]) -> None:
    dataset = MriDataset(samples)
    batch = handler_batch([sample.path.read_bytes() for sample in samples])
    assert batch.shape == (len(samples), 3, 224, 224) and batch.dtype == torch.float32
    for index, sample in enumerate(samples):
        tensor, label = dataset[index]
        assert label == sample.label
        assert torch.equal(tensor, batch[index]), sample.path


@pytest.fixture(scope="module")
def real_samples() -> list[Sample]:
    """Five files per class, greyscale and RGB JPEGs among them (the dataset mixes both)."""
    samples = list_samples(DATA)
    picks = [s for label in range(4) for s in [x for x in samples if x.label == label][::250][:5]]
    modes = set()
    for sample in picks:
        with Image.open(sample.path) as image:
            modes.add(image.mode)
    assert {"L", "RGB"} <= modes, modes
    return picks


@needs_data
def test_dataset_and_handler_tensors_are_identical(real_samples: list[Sample]) -> None:
    assert_parity(real_samples)


@needs_data
def test_parity_holds_for_other_sizes_and_formats(real_samples: list[Sample], tmp_path: Path) -> None:
    """Dataset images are all 224x224; uploads are not, so the resize step must agree too."""
    samples = []
    for index, sample in enumerate(real_samples[::4]):
        with Image.open(sample.path) as image:
            resized = image.resize((300 + index * 37, 260), Image.Resampling.BICUBIC)
        for suffix in (".png", ".jpg"):
            path = tmp_path / f"{index}{suffix}"
            resized.save(path)
            samples.append(Sample(path, sample.label))
    assert_parity(samples)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(dtype: type, high: int) -> np.ndarray:
    """A 200x180 ramp from 0 to ``high``: both extremes present, so scaling is checkable."""
    return np.linspace(0, high, 200 * 180).reshape(200, 180).astype(dtype)


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(gradient(np.uint8, 255)),
        Image.fromarray(np.dstack([gradient(np.uint8, 255)] * 3 + [gradient(np.uint8, 128)])),
        Image.fromarray(gradient(np.uint16, 4095)),
    ],
    ids=["greyscale", "rgba", "16-bit"],
)
def test_any_input_becomes_a_normalised_rgb_tensor(image: Image.Image) -> None:
    tensor = handler_batch([encode_png(image)])[0]
    assert tensor.shape == (3, 224, 224)
    assert tensor.dtype == torch.float32
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])


def test_sixteen_bit_range_is_stretched_not_clipped() -> None:
    """A 12-bit scan stored in 16 bits must span [-1, 1], not saturate to white or stay black."""
    image = Image.fromarray(gradient(np.uint16, 4095))
    assert image.mode.startswith("I;16")
    tensor = handler_batch([encode_png(image)])[0]
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    assert 0.3 < float((tensor > 0).float().mean()) < 0.7


def test_float_image_is_stretched_and_non_finite_pixels_ignored() -> None:
    """A 0..1 float slice spans [-1, 1] like any other (Pillow alone turns it black); NaN and
    infinities neither poison the range nor crash the conversion."""
    floats = gradient(np.float32, 1)
    floats[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    grey = np.asarray(to_rgb(Image.fromarray(floats, mode="F")))[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert grey[0, 0] == 0 and grey[0, 1] == 0  # non-finite pixels take the darkest value


def test_a_non_square_slice_keeps_its_proportions_on_black_bars() -> None:
    """A 256x208 picture (a scanner's non-square matrix) is fitted, not stretched: a circle stays round."""
    y, x = np.mgrid[:208, :256]
    disc = ((np.hypot(y - 104, x - 128) < 90) * 200).astype(np.uint8)
    fitted = np.asarray(resize(Image.fromarray(disc)))
    assert fitted.shape == (224, 224)
    rows, cols = np.nonzero(fitted > 100)
    assert abs((rows.max() - rows.min()) - (cols.max() - cols.min())) <= 2  # round, not an ellipse
    bar = (224 - round(208 * 224 / 256)) // 2
    assert fitted[:bar].max() == 0 and fitted[-bar:].max() == 0
    square = Image.fromarray(np.full((300, 300), 7, np.uint8))
    assert np.asarray(resize(square)).min() == 7  # a square picture fills the input: no bars
