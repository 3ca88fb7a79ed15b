"""Model factory: the timm classifier every part of the product builds the same way."""

import torch
from torch import nn

from neuroscan.classes import NUM_CLASSES
from neuroscan.spec import DEFAULT_SPEC, ModelSpec, get_spec
from neuroscan.weights import WeightFile, load_weights

IMAGENET_CLASSES = 1000


def create_model(spec: ModelSpec = DEFAULT_SPEC, num_classes: int = NUM_CLASSES) -> nn.Module:
    """An untrained model of ``spec``'s architecture (weights come from a file or the mapper)."""
    import timm  # heavy import kept out of module load for tools that only need metadata

    return timm.create_model(spec.arch, pretrained=False, num_classes=num_classes)


def create_imagenet_model(spec: ModelSpec = DEFAULT_SPEC) -> nn.Module:
    """The ImageNet classifier, with weights mapped from the offline package."""
    from neuroscan.pretrained import load_imagenet_weights

    return load_imagenet_weights(create_model(spec, IMAGENET_CLASSES), spec).eval()


def create_finetune_model(spec: ModelSpec = DEFAULT_SPEC) -> nn.Module:
    """ImageNet backbone plus a fresh 4-class head that starts at zero.

    timm's default head init gives very large first logits on these features, which wrecks the
    first epochs of fine-tuning; a zero head starts from uniform predictions instead.
    """
    imagenet = create_imagenet_model(spec)
    model = create_model(spec)
    backbone = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("classifier.")}
    model.load_state_dict(backbone, strict=False)
    head = model.get_classifier()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return model


def load_trained_model(path, device: str | torch.device = "cpu") -> tuple[nn.Module, WeightFile]:
    """Build the model a weight file describes and load it strictly, in eval mode."""
    weights = load_weights(path)
    model = create_model(get_spec(weights.meta.spec))
    model.load_state_dict(weights.state_dict, strict=True)
    return model.to(device).eval(), weights
