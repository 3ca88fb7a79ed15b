"""One forward pass that yields both the logits and the pooled features the MRI check needs."""

import torch
from torch import nn


def logits_and_features(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) from a timm classifier in a single pass."""
    pooled = model.forward_head(model.forward_features(batch), pre_logits=True)
    return model.get_classifier()(pooled), pooled
