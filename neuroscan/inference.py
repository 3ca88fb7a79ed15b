"""One forward pass that yields the logits, the pooled features the MRI check needs, and the heatmap.

With global average pooling and a linear head, Grad-CAM's channel weights (the mean gradient of the
class logit over each map) are exactly the head's weights divided by h*w, so the map is
ReLU(sum_k w[class, k] * A_k): no backward pass, and it works on any feature backend. It lives
here because the handler serves it and the external validation measures where it points.
"""

import numpy as np
import torch
from torch import nn


def logits_and_features(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) from a timm classifier in a single pass."""
    return head_outputs(model, model.forward_features(batch))


def head_outputs(model: nn.Module, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) of a timm classifier's feature map (N, C, h, w)."""
    pooled = model.forward_head(feature_map, pre_logits=True)
    return model.get_classifier()(pooled), pooled


def class_activation(feature_map: torch.Tensor, weight: torch.Tensor, target: int) -> np.ndarray:
    """Normalised [0, 1] Grad-CAM map (h, w) of one image's features for class ``target``."""
    cam = torch.relu(torch.einsum("c,chw->hw", weight[target].float(), feature_map.float()))
    peak = float(cam.max())
    return (cam / peak).numpy() if peak > 0 else cam.numpy()
