"""Tiny real training runs: export, exact resume, and two-process DDP under torchrun.

Eight images per side and one epoch per phase keep each run to seconds on a CPU, while still
going through the real data, split, model factory, checkpointing and export. Batches of four
give two optimiser steps per epoch: with a single step, the one-cycle schedule's only learning
rate is its near-zero final one and the weights would barely move.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from deps import needs

from neuroscan.classes import CLASSES, NO_TUMOUR
from neuroscan.model import load_trained_model
from neuroscan.weights import load_weights
from training.baseline import BaselineCNN
from training.healthy import template_samples
from training.recipes import RECIPES
from training.train import Trainer, main, parse_args

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/brain-tumor-mri/Training"
TINY = ["--limit", "8", "--batch-size", "4", "--workers", "0", "--no-progress"]

pytestmark = needs(DATA.is_dir(), f"dataset not found at {DATA}")


def train(out: Path, *args: str) -> None:
    main([*TINY, "--out", str(out), *args])


def epoch_records(out: Path) -> list[dict]:
    """The per-epoch log without wall-clock times (which differ between otherwise equal runs)."""
    lines = (out / "epochs.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lite0, all three phases in one go (maps the ImageNet package weights: the slow part)."""
    out = tmp_path_factory.mktemp("unbroken")
    train(out, "--epochs", "1", "1", "1")
    return out


def test_tiny_run_exports_a_servable_model(unbroken_run: Path) -> None:
    assert [r["phase"] for r in epoch_records(unbroken_run)] == ["head", "top", "all"]
    model, weights = load_trained_model(unbroken_run / "model.safetensors")
    assert weights.meta.spec == "lite0"
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 4)


def test_resume_continues_and_matches_the_unbroken_run(
    unbroken_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Stopped after two phases and resumed, a run ends where the unbroken one did, bit for bit."""
    train(tmp_path, "--epochs", "1", "1")
    assert len(epoch_records(tmp_path)) == 2
    capsys.readouterr()
    train(tmp_path, "--epochs", "1", "1", "1", "--resume")
    assert "resumed at phase 2 epoch 0" in capsys.readouterr().out
    assert epoch_records(tmp_path) == epoch_records(unbroken_run)  # 3 lines, not 2 + 3
    resumed = torch.load(tmp_path / "last.pt", weights_only=True)["model"]
    unbroken = torch.load(unbroken_run / "last.pt", weights_only=True)["model"]
    assert resumed.keys() == unbroken.keys()
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)


def test_torchrun_with_two_processes(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "training.train", "--model", "baseline", "--epochs", "1", *TINY, "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(epoch_records(tmp_path)) == 1  # only rank 0 writes the log
    weights = load_weights(tmp_path / "model.safetensors")
    assert weights.meta.spec == "baseline"
    BaselineCNN().load_state_dict(weights.state_dict, strict=True)


@pytest.mark.parametrize("recipe", ["robust", "robust-colin"])
def test_robust_recipes_fine_tune_the_shipped_model_with_their_templates_added(recipe: str, tmp_path: Path) -> None:
    """2.x starts from the shipped weights, head included, and trains on its templates' slices as no-tumour too
    (2.0: MNI152; 2.2: MNI152 and Colin27)."""
    trainer = Trainer(parse_args([*TINY, "--model", recipe, "--out", str(tmp_path)]))
    shipped = load_weights(ROOT / "model_store" / "brain_tumor.safetensors").state_dict
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k].float(), shipped[k].float()) for k in shipped)
    template = template_samples(RECIPES[recipe].templates)
    limited = len(trainer.train_set) - len(template)
    assert 8 <= limited <= 9  # --limit 8 keeps every n-th training file
    assert trainer.train_set.labels[limited:] == [CLASSES.index(NO_TUMOUR)] * len(template)
    assert len(template) >= 150 * len(RECIPES[recipe].templates)


def test_balanced_recipe_weighs_each_class_by_its_inverse_frequency(tmp_path: Path) -> None:
    """The polish recipe's loss weighs every class alike: the template makes no-tumour the largest
    class, so its slices weigh least."""
    trainer = Trainer(parse_args([*TINY, "--model", "robust-polish", "--out", str(tmp_path)]))
    weight = trainer.criterion.weight
    counts = torch.bincount(torch.tensor(trainer.train_set.labels), minlength=len(CLASSES)).float()
    assert torch.allclose(weight * counts, torch.full_like(counts, len(trainer.train_set) / len(CLASSES)))
    assert int(weight.argmin()) == CLASSES.index(NO_TUMOUR)
    assert Trainer(parse_args([*TINY, "--model", "robust", "--out", str(tmp_path / "plain")])).criterion.weight is None


def test_averaging_recipe_exports_the_mean_of_its_start_and_its_fine_tune(tmp_path: Path) -> None:
    """2.3 ships the mean of 2.2.0's weights and its polish: what the run exports is that mean, not the polish
    alone (a drop of ``start_share`` would silently ship the polish and its confident misses)."""
    trainer = Trainer(parse_args([*TINY, "--model", "masses-average", "--out", str(tmp_path)]))
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    trainer._export(tmp_path / "averaged.safetensors")
    exported = load_weights(tmp_path / "averaged.safetensors").state_dict
    start = load_weights(ROOT / "model_store" / "brain_tumor.safetensors").state_dict
    for name, _ in trainer.model.named_parameters():
        assert torch.allclose(exported[name], start[name] + 0.5, atol=1e-6), name
