"""Temperature-scaled softmax: the one formula training evaluates and serving applies."""

import torch


def calibrated_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of ``logits / temperature`` along the class axis."""
    return torch.softmax(logits.float() / float(temperature), dim=-1)
