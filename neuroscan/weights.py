"""Weight files: safetensors (no pickle) with the metadata serving needs in the header.

A shipped file carries the model's version, its fitted softmax temperature, the class list,
the input size and the spec name, plus optional extra tensors (the MRI-check statistics), so
one file fully describes what a worker serves.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from neuroscan.classes import CLASSES

EXTRA_PREFIX = "extra."


class WeightsError(RuntimeError):
    """The weight file is missing, unreadable or does not match this code's contract."""


@dataclass
class ModelMeta:
    """What a weight file says about itself (stored as JSON in the safetensors header)."""

    version: str
    spec: str = "lite0"
    temperature: float = 1.0
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    input_size: int = 224
    extra: dict = field(default_factory=dict)

    def to_header(self) -> dict[str, str]:
        return {"neuroscan": json.dumps(asdict(self), sort_keys=True)}

    @classmethod
    def from_header(cls, header: dict[str, str] | None) -> "ModelMeta":
        if not header or "neuroscan" not in header:
            raise WeightsError("weight file has no NeuroScan metadata header")
        return cls(**json.loads(header["neuroscan"]))


@dataclass
class WeightFile:
    """A loaded weight file: the model's state dict, its metadata and any extra tensors."""

    state_dict: dict[str, torch.Tensor]
    meta: ModelMeta
    extras: dict[str, torch.Tensor]


def save_weights(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    meta: ModelMeta,
    extras: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights, extras and metadata atomically (a crash never leaves half a file)."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tensors.update({EXTRA_PREFIX + k: v.detach().cpu().contiguous() for k, v in (extras or {}).items()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta.to_header())
    tmp.chmod(0o644)  # safetensors writes 0600; the server images read it as a non-root user
    tmp.replace(path)
    return path


def load_weights(path: str | Path) -> WeightFile:
    """Read a weight file written by :func:`save_weights`; raise :class:`WeightsError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = ModelMeta.from_header(handle.metadata())
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError, TypeError) as exc:
        raise WeightsError(f"weight file {path} is corrupt: {exc}") from exc
    if tuple(meta.classes) != CLASSES:
        raise WeightsError(f"weight file classes {meta.classes} differ from {list(CLASSES)}")
    extras = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    return WeightFile(state_dict=state, meta=meta, extras=extras)


def read_meta(path: str | Path) -> ModelMeta:
    """Only the metadata header (cheap: no tensors are read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return ModelMeta.from_header(handle.metadata())
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from exc
