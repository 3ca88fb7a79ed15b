"""Temperature scaling and ECE behave as the model card says, on data whose answer is known.

Labels are drawn from a known softmax, so the right temperature and the right calibration
error are known exactly and the code under test has something to be wrong about.
"""

import numpy as np
import pytest
import torch

from neuroscan.calibration import calibrated_probabilities
from training.calibrate import (
    cross_validated_ece,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)

N, CLASSES = 20_000, 4


def synthetic(scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated logits (labels drawn from their softmax), then multiplied by ``scale``.

    A model returning these logits needs temperature ``scale`` to be calibrated again.
    """
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, CLASSES, generator=generator) * 2.0
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return logits * scale, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature: float) -> None:
    logits, labels = synthetic(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_ece_is_small_for_calibrated_and_large_for_overconfident_predictions() -> None:
    logits, labels = synthetic()
    calibrated = torch.softmax(logits, 1).numpy()
    overconfident = torch.softmax(logits * 3.0, 1).numpy()
    assert expected_calibration_error(calibrated, labels.numpy()) < 0.02
    assert expected_calibration_error(overconfident, labels.numpy()) > 0.1


def test_temperature_scaling_repairs_overconfidence() -> None:
    logits, labels = synthetic(3.0)
    raw = expected_calibration_error(torch.softmax(logits, 1).numpy(), labels.numpy())
    assert cross_validated_ece(logits, labels) < 0.02 < raw


def test_reliability_bins_account_for_every_prediction() -> None:
    logits, labels = synthetic()
    probabilities = torch.softmax(logits, 1).numpy()
    rows = reliability_bins(probabilities, labels.numpy())
    assert sum(r["count"] for r in rows) == N
    assert all(r["low"] < r["confidence"] <= r["high"] for r in rows)
    assert rows[0]["low"] >= 0.2  # four classes: top-1 confidence is never below 1/4


def test_calibrated_probabilities_divide_logits_by_temperature() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    probabilities = calibrated_probabilities(logits, 2.0)
    assert torch.allclose(probabilities, torch.softmax(logits / 2.0, 1))
    assert float(probabilities.max()) < float(torch.softmax(logits, 1).max())
    assert np.isclose(float(probabilities.sum()), 1.0)
