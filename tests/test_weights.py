"""Weight files round-trip with their metadata, and every way of being unusable is a WeightsError.

Serving refuses to start on a bad file rather than serve a wrong model, so the refusal paths
matter as much as the happy one.
"""

import json
from pathlib import Path

import pytest
import torch
from deps import missing
from safetensors.torch import save_file

from neuroscan.classes import CLASSES
from neuroscan.weights import (
    ModelMeta,
    WeightsError,
    load_weights,
    read_meta,
    save_weights,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(4, 8, generator=generator), "layer.bias": torch.zeros(4),
            "bn.num_batches_tracked": torch.tensor(7)}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    meta = ModelMeta(version="9.9.9", temperature=0.75, extra={"val_accuracy": 0.5})
    return save_weights(tmp_path / "model.safetensors", tiny_state(), meta, {"ood.mean": torch.arange(3.0)})


def test_round_trip_keeps_tensors_metadata_and_extras(saved: Path) -> None:
    loaded = load_weights(saved)
    expected = tiny_state()
    assert loaded.state_dict.keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in expected.items())
    assert torch.equal(loaded.extras["ood.mean"], torch.arange(3.0))
    assert loaded.meta == ModelMeta(version="9.9.9", temperature=0.75, extra={"val_accuracy": 0.5})
    assert read_meta(saved) == loaded.meta
    assert not list(saved.parent.glob("*.tmp"))  # written atomically, nothing left behind


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError):
        read_meta(tmp_path / "absent.safetensors")


def test_garbage_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(path)


def test_truncated_file_raises(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes()[:-40])
    with pytest.raises(WeightsError):
        load_weights(saved)


def test_file_without_neuroscan_header_raises(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file(tiny_state(), str(path))
    with pytest.raises(WeightsError, match="metadata"):
        load_weights(path)


def test_wrong_class_list_raises(tmp_path: Path) -> None:
    reordered = [CLASSES[1], CLASSES[0], *CLASSES[2:]]
    path = save_weights(tmp_path / "m.safetensors", tiny_state(), ModelMeta(version="1", classes=reordered))
    with pytest.raises(WeightsError, match="classes"):
        load_weights(path)


def test_unknown_metadata_field_raises(tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    header = {"version": "1", "classes": list(CLASSES), "colour": "blue"}
    save_file(tiny_state(), str(path), metadata={"neuroscan": json.dumps(header)})
    with pytest.raises(WeightsError):
        load_weights(path)


@pytest.mark.parametrize("name", ["brain_tumor", "baseline_cnn"])
def test_shipped_files_carry_a_fitted_temperature(name: str) -> None:
    path = ROOT / "model_store" / f"{name}.safetensors"
    if not path.is_file():
        missing(f"{path} not exported (it ships in the repository)")
    meta = read_meta(path)
    assert meta.classes == list(CLASSES)
    assert 0.2 < meta.temperature < 5.0 and meta.temperature != 1.0
    assert meta.extra["val_accuracy"] > 0.9
