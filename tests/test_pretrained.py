"""The offline ImageNet mapping really is ImageNet: it names real photos and fills every tensor.

The mapping is positional, so a silent off-by-one would still load "successfully" and only
show up as a model that recognises nothing; classifying photos is the check that catches it.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from neuroscan.model import create_imagenet_model, create_model
from neuroscan.preprocess import preprocess
from neuroscan.pretrained import PretrainedMappingError, checkpoint_path, map_state_dict
from neuroscan.spec import LITE0

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968}  # espresso, cup
ROCKET = {657, 744, 812}  # missile, projectile, space shuttle
STATE_ENTRIES = 296  # tf_efficientnet_lite0 state dict, BatchNorm step counters included
MAPPED_TENSORS = 247  # the same minus the 49 counters, which carry no learned value


@pytest.fixture(scope="module")
def imagenet_model() -> torch.nn.Module:
    return create_imagenet_model()


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    return torch.load(checkpoint_path(LITE0), map_location="cpu", weights_only=True)


def top_classes(model: torch.nn.Module, photo: np.ndarray, k: int) -> list[int]:
    """ImageNet indices of the ``k`` most likely classes, through the shared preprocessing."""
    with torch.no_grad():
        logits = model(preprocess(Image.fromarray(photo))[None])
    return logits[0].topk(k).indices.tolist()


def test_cat_photo_is_a_cat(imagenet_model) -> None:
    assert top_classes(imagenet_model, data.chelsea(), 1)[0] in CATS


def test_coffee_photo_is_espresso_or_cup(imagenet_model) -> None:
    assert top_classes(imagenet_model, data.coffee(), 1)[0] in COFFEE


def test_rocket_photo_is_a_rocket_in_top5(imagenet_model) -> None:
    assert ROCKET & set(top_classes(imagenet_model, data.rocket(), 5))


def test_every_tensor_is_mapped_with_its_shape(source) -> None:
    model = create_model(LITE0, 1000)
    state = model.state_dict()
    mapped = map_state_dict(source, model)
    assert len(source) == len(state) == STATE_ENTRIES
    assert len(mapped) == MAPPED_TENSORS
    assert set(mapped) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert all(mapped[k].shape == state[k].shape for k in mapped)


def test_loaded_model_holds_the_source_values(imagenet_model, source) -> None:
    """Every learned tensor of the built model equals its source tensor, in order."""
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    state = [v for k, v in imagenet_model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert all(torch.equal(a, b) for a, b in zip(values, state, strict=True))


def test_wrong_shaped_source_raises(source) -> None:
    broken = dict(source)
    key = next(k for k, v in broken.items() if v.ndim == 4)
    broken[key] = broken[key][:, :-1]
    with pytest.raises(PretrainedMappingError, match="shape mismatch"):
        map_state_dict(broken, create_model(LITE0, 1000))


def test_missing_tensor_raises(source) -> None:
    broken = dict(source)
    broken.pop(next(iter(broken)))
    with pytest.raises(PretrainedMappingError, match="tensors"):
        map_state_dict(broken, create_model(LITE0, 1000))
