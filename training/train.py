"""Train the EfficientNet-Lite0 fine-tune or the from-scratch baseline on the saved split.

Runs alone or under ``torchrun`` (DistributedDataParallel; ``gloo`` on CPU, ``nccl`` on GPU).
Every epoch writes ``last.pt`` (model, optimiser, scheduler, position, RNG) so an interrupted
run resumes with ``--resume``; the best epoch by validation loss is exported as
``model.safetensors`` (averaged with the start weights where the recipe's ``start_share`` says so).
One JSON line per epoch goes to ``epochs.jsonl``.

    python -m training.train --model lite0 --out runs/lite0
    torchrun --nproc-per-node 2 -m training.train --model lite0 --out runs/lite0
"""

import argparse
import json
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from neuroscan.classes import CLASSES
from neuroscan.model import create_finetune_model, create_model, load_trained_model
from neuroscan.weights import ModelMeta, load_weights, save_weights
from training.augment import MriAugment
from training.baseline import BaselineCNN
from training.data import DEFAULT_ROOT, MriDataset
from training.healthy import template_samples
from training.lesions import LesionConfig, LesionSynthesis
from training.recipes import RECIPES, trainable_parameters
from training.split import SPLIT_FILE, load_split

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(RECIPES), default="lite0")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--split", type=Path, default=SPLIT_FILE)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, help="mapped ImageNet weights (safetensors) instead of the package")
    parser.add_argument("--start-from", type=Path, help="trained weights to fine-tune, head included "
                        "(default: the recipe's start_from)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument("--epochs", type=int, nargs="*", help="override epochs per phase")
    parser.add_argument("--limit", type=int, help="use only N images per side (smoke tests)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default=None, help="version string stored in the weights")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it natively; ``None`` means full fp32."""
    if mode == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if mode == "bf16" or native else None


def build_model(name: str, init: Path | None, start_from: Path | None = None) -> nn.Module:
    """The recipe's starting point: a trained file (fine-tune), mapped ImageNet weights, or the package's."""
    if name == "baseline":
        return BaselineCNN()
    if start_from is not None:
        return load_trained_model(start_from)[0].train()
    if init is None:
        return create_finetune_model()
    model = create_model()
    state = {k: v.float() for k, v in load_weights(init).state_dict.items() if not k.startswith("classifier.")}
    model.load_state_dict(state, strict=False)
    nn.init.zeros_(model.get_classifier().weight)
    nn.init.zeros_(model.get_classifier().bias)
    return model


class Trainer:
    """Phases x epochs with checkpoints, early stopping and rank-0 logging."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rank, self.world, self.device = setup_distributed()
        seed_everything(args.seed + self.rank)
        recipe = RECIPES[args.model]
        if args.epochs:
            phases = tuple(p.__class__(**{**asdict(p), "epochs": e}) for p, e in zip(recipe.phases, args.epochs))
            recipe = replace(recipe, phases=phases)
        self.recipe = recipe
        self.batch_size = args.batch_size or recipe.batch_size
        self.amp = autocast_dtype(args.amp, self.device)
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        start_from = args.start_from or (ROOT / recipe.start_from if recipe.start_from else None)
        self.model = build_model(args.model, args.init, start_from).to(self.device)
        # The weights the run began from, kept for the export's average (read once, not at every export).
        self.start_state = ({k: v.detach().clone() for k, v in self.model.state_dict().items()}
                            if recipe.start_share and start_from is not None else None)
        self._load_data()
        weight = class_balance(self.train_set.labels, self.lesions) if recipe.balanced else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.label_smoothing).to(self.device)
        self.state = {"phase": 0, "epoch": 0, "best_loss": float("inf"), "stale": 0, "history": []}
        # Optimiser/scheduler state read by --resume, applied when that phase's optimiser exists.
        self._pending_optim: dict | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _load_data(self) -> None:
        split = load_split(self.args.split)
        train, val = split.samples(self.args.data, "train"), split.samples(self.args.data, "val")
        if self.args.limit:
            train, val = train[:: max(1, len(train) // self.args.limit)], val[:: max(1, len(val) // self.args.limit)]
        extra = template_samples(self.recipe.templates)
        self.lesions = LesionSynthesis(LesionConfig(p=self.recipe.lesion_share)) if self.recipe.lesion_share else None
        self.train_set = MriDataset(train, MriAugment(), extra, relabel=self.lesions)
        self.val_set = MriDataset(val)
        distributed = self.world > 1
        self.train_sampler = DistributedSampler(self.train_set, seed=self.args.seed) if distributed else None
        val_sampler = DistributedSampler(self.val_set, shuffle=False) if distributed else None
        common = {"batch_size": self.batch_size, "num_workers": self.args.workers,
                  "persistent_workers": self.args.workers > 0, "worker_init_fn": _seed_worker}
        self.train_loader = DataLoader(self.train_set, shuffle=not distributed, sampler=self.train_sampler,
                                       drop_last=len(self.train_set) > self.batch_size * self.world, **common)
        self.val_loader = DataLoader(self.val_set, shuffle=False, sampler=val_sampler, **common)

    def _wrapped(self) -> nn.Module:
        if self.world == 1:
            return self.model
        return DistributedDataParallel(self.model, find_unused_parameters=True)

    def run(self) -> None:
        if self.args.resume and (self.out / "last.pt").exists():
            self._resume()
        for index in range(self.state["phase"], len(self.recipe.phases)):
            self._run_phase(index)
        if self.is_main:
            self._log(f"done: best val loss {self.state['best_loss']:.4f}")
        if self.world > 1:
            dist.destroy_process_group()

    def _make_optim(self, index: int):
        phase = self.recipe.phases[index]
        params = trainable_parameters(self.model, phase.trainable)
        optimiser = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
        steps = max(1, phase.epochs * len(self.train_loader))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=phase.lr, total_steps=steps, pct_start=0.1)
        return optimiser, scheduler

    def _run_phase(self, index: int) -> None:
        phase = self.recipe.phases[index]
        optimiser, scheduler = self._make_optim(index)
        if self._pending_optim is not None:
            optimiser.load_state_dict(self._pending_optim["optimiser"])
            scheduler.load_state_dict(self._pending_optim["scheduler"])
            self._pending_optim = None
        model = self._wrapped()
        for epoch in range(self.state["epoch"], phase.epochs):
            if self.train_sampler is not None:
                self.train_sampler.set_epoch(index * 1000 + epoch)
            train_loss, train_acc = self._train_epoch(model, optimiser, scheduler, f"{phase.name} {epoch + 1}/{phase.epochs}")
            val_loss, val_acc = self._validate()
            self._after_epoch(index, epoch, train_loss, train_acc, val_loss, val_acc, optimiser, scheduler)
            if self.state["stale"] >= self.recipe.patience:
                self._log(f"early stop in phase {phase.name} after {epoch + 1} epochs")
                break
        self.state.update(phase=index + 1, epoch=0, stale=0)

    def _train_epoch(self, model, optimiser, scheduler, label: str) -> tuple[float, float]:
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(self.train_loader, desc=label, disable=not self.is_main or self.args.no_progress, leave=False)
        for images, labels in bar:
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                logits = model(images)
                loss = self.criterion(logits.float(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            loss_sum += float(loss.detach()) * len(labels)
            bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.4f}")
        return self._reduce(loss_sum, correct, total)

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        self.model.eval()
        total, correct, loss_sum = 0, 0, 0.0
        for images, labels in self.val_loader:
            images, labels = images.to(self.device), labels.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                logits = self.model(images).float()
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            total += len(labels)
        return self._reduce(loss_sum, correct, total)

    def _reduce(self, loss_sum: float, correct: int, total: int) -> tuple[float, float]:
        """Sum across ranks so every rank sees the same epoch metrics (and stops together)."""
        if self.world > 1:
            t = torch.tensor([loss_sum, correct, total], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            loss_sum, correct, total = t.tolist()
        return loss_sum / max(total, 1), correct / max(total, 1)

    def _after_epoch(self, index, epoch, train_loss, train_acc, val_loss, val_acc, optimiser, scheduler) -> None:
        improved = val_loss < self.state["best_loss"] - 1e-4
        self.state["stale"] = 0 if improved else self.state["stale"] + 1
        if improved:
            self.state["best_loss"] = val_loss
        record = {"phase": self.recipe.phases[index].name, "epoch": epoch + 1, "train_loss": round(train_loss, 5),
                  "train_acc": round(train_acc, 5), "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5),
                  "lr": optimiser.param_groups[0]["lr"], "time": round(time.time(), 1)}
        self.state["history"].append(record)
        self.state["epoch"] = epoch + 1
        if not self.is_main:
            return
        self._log(json.dumps(record))
        with open(self.out / "epochs.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        if improved:
            self._export(self.out / "model.safetensors")
        self._checkpoint(index, optimiser, scheduler)

    def _export(self, path: Path) -> None:
        version = self.args.version or f"{self.args.model}-{time.strftime('%Y%m%d')}"
        spec = "baseline" if self.args.model == "baseline" else "lite0"  # the robust fine-tune is a Lite0 too
        state = self.model.state_dict()
        if self.start_state is not None:
            state = average_weights(self.start_state, state, self.recipe.start_share)
        save_weights(path, state, ModelMeta(version=version, spec=spec))

    def _checkpoint(self, index: int, optimiser, scheduler) -> None:
        checkpoint = {
            "model": self.model.state_dict(), "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(), "phase": index, "state": self.state,
            "rng": _rng_state(),
        }
        tmp = self.out / "last.pt.tmp"
        torch.save(checkpoint, tmp)
        tmp.replace(self.out / "last.pt")

    def _resume(self) -> None:
        checkpoint = torch.load(self.out / "last.pt", map_location=self.device, weights_only=True)
        self.model.load_state_dict(checkpoint["model"])
        self.state = checkpoint["state"]
        _set_rng_state(checkpoint["rng"])
        phase_over = self.state["epoch"] >= self.recipe.phases[checkpoint["phase"]].epochs
        if phase_over or self.state["stale"] >= self.recipe.patience:
            self.state.update(phase=checkpoint["phase"] + 1, epoch=0, stale=0)
        else:
            self.state["phase"] = checkpoint["phase"]
            self._pending_optim = {"optimiser": checkpoint["optimiser"], "scheduler": checkpoint["scheduler"]}
        self._log(f"resumed at phase {self.state['phase']} epoch {self.state['epoch']}")

    def _log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)


def average_weights(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                    start_share: float) -> dict[str, torch.Tensor]:
    """``start_share`` of ``start`` plus the rest of ``tuned``, tensor by tensor (integer counters such as
    batch-norm's are the fine-tune's): a weight-space average of two points of one fine-tuning path."""
    return {key: start[key].to(value) * start_share + value * (1 - start_share) if value.is_floating_point()
            else value for key, value in tuned.items()}


def class_balance(labels: list[int], lesions: LesionSynthesis | None = None) -> torch.Tensor:
    """Inverse class frequencies, scaled so a balanced data set would weigh every sample 1.

    With synthetic masses the frequencies are the expected ones after relabelling.
    """
    counts = torch.bincount(torch.tensor(labels), minlength=len(CLASSES)).float()
    if lesions is not None:
        counts = lesions.expected_counts(counts)
    return counts.sum() / (len(CLASSES) * counts)


def _rng_state() -> dict:
    """Every generator an epoch draws from (augmentation uses Python's), in types ``weights_only`` loads."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
            "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    """Restore :func:`_rng_state`, so a resumed run draws the same augmentations as an unbroken one."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def main(argv: list[str] | None = None) -> None:
    Trainer(parse_args(argv)).run()


if __name__ == "__main__":
    main()
