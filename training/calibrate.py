"""Temperature fitting and calibration measures (expected calibration error, reliability bins)."""

from itertools import pairwise

import numpy as np
import torch

from neuroscan.calibration import calibrated_probabilities


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature minimising the negative log-likelihood (LBFGS on log T)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits.float() / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per confidence bin: count, mean confidence and accuracy of the top-1 prediction."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in pairwise(edges):
        mask = (confidence > low) & (confidence <= high)
        if mask.any():
            rows.append({"low": float(low), "high": float(high), "count": int(mask.sum()),
                         "confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean())})
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Count-weighted mean |accuracy - confidence| over reliability bins."""
    rows = reliability_bins(probabilities, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total)


def cross_validated_ece(logits: torch.Tensor, labels: torch.Tensor, folds: int = 2, seed: int = 0) -> float:
    """ECE after temperature scaling where each half is scaled by a T fitted on the other half.

    Fitting T and measuring ECE on the same images flatters the result; this does not.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    parts = np.array_split(order, folds)
    probabilities = np.zeros((len(labels), logits.shape[1]))
    for k, held in enumerate(parts):
        fit_idx = np.concatenate([p for j, p in enumerate(parts) if j != k])
        t = fit_temperature(logits[fit_idx], labels[fit_idx])
        probabilities[held] = calibrated_probabilities(logits[held], t).numpy()
    return expected_calibration_error(probabilities, labels.numpy())
