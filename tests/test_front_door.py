"""What a new user meets first: a clone with nothing beside it builds and serves, and odd but
legitimate inputs get the answer their problem deserves (not "corrupt")."""

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from handler.wait_ready import wait_ready
from neuroscan.imaging import MAX_PIXELS
from tests.images import encode
from tests.torchserve_fixture import (
    REPO,
    TorchServe,
    free_ports,
    start_torchserve,
    stop_torchserve,
    write_config,
)

OCTET = {"Content-Type": "application/octet-stream"}
VENV = Path(sys.executable).parent.parent
INT8 = REPO / "model_store" / "brain_tumor.int8.onnx"


def predict(server, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.inference_url}/predictions/{server.model_name}", content=body,
                      headers={**OCTET, **server.headers()}, timeout=60)


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """A command's exit code and output, for the test to judge (never raises on failure)."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def make(target: str, cwd: Path, data: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``make target`` with this test run's virtualenv, taken as installed (no reinstall)."""
    return run(["make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", f"DATA={data}", target],
               cwd, timeout)


def checkout_copy(target: Path) -> Path:
    """The working tree as git sees it (tracked and untracked-not-ignored files), without the
    virtualenv, build outputs or anything beside the repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def bare_archive(tmp_path_factory) -> Path:
    """``make archive`` in a copy of the repository with DATA pointing at an empty folder."""
    root = tmp_path_factory.mktemp("bare")
    clone = checkout_copy(root / "neuroscan")
    empty = root / "no-data"
    empty.mkdir()
    result = make("archive", clone, empty, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return clone / "model_store" / "brain_tumor.mar"


def test_archive_builds_and_serves_without_the_data_set(bare_archive, tmp_path, torchserve, val_images):
    """The archive built without data answers exactly as the one ``make test`` built (same int8 graph)."""
    home = tmp_path / "ts"
    (home / "tmp").mkdir(parents=True)
    ports = free_ports(5)
    env = start_torchserve(home, write_config(home, ports), home / "store", "brain_tumor=brain_tumor.mar",
                           mar=bare_archive, repo=bare_archive.parents[1])
    try:
        wait_ready(f"http://127.0.0.1:{ports[1]}", "brain_tumor", home / "key_file.json", timeout=240)
        bare = TorchServe(*(f"http://127.0.0.1:{p}" for p in ports[:3]), key_file=home / "key_file.json", home=home)
        for path in (val_images["glioma"][0], val_images["pituitary"][0]):
            fresh, reference = predict(bare, path.read_bytes()), predict(torchserve, path.read_bytes())
            assert fresh.status_code == 200, fresh.text
            assert fresh.json()["probabilities"] == reference.json()["probabilities"]
            assert fresh.json()["label"] == path.parent.name
    finally:
        stop_torchserve(home, env)


def test_int8_graph_for_other_weights_is_refused(tmp_path):
    """The archive step refuses a committed int8 graph stamped with another weight file's hash."""
    other = tmp_path / "other.safetensors"
    other.write_bytes((REPO / "model_store" / "brain_tumor.safetensors").read_bytes() + b" ")
    result = run([sys.executable, "-m", "handler.export_onnx", "--weights", str(other), "--verify", str(INT8)],
                 REPO, timeout=120)
    assert result.returncode != 0 and "make int8" in result.stderr
    assert "Traceback" not in result.stderr
    ok = run([sys.executable, "-m", "handler.export_onnx", "--verify", str(INT8)], REPO, timeout=120)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("target", ["eda", "evaluate", "train", "bench", "int8"])
def test_data_targets_name_data_when_it_is_missing(target, tmp_path):
    """One line naming DATA=, not a traceback: the guard is the target's first prerequisite."""
    result = make(target, REPO, tmp_path / "missing")
    assert result.returncode != 0
    assert f"DATA={tmp_path / 'missing'}" in result.stderr and "Traceback" not in result.stderr


def test_decompression_bomb_is_too_large_not_corrupt(torchserve):
    """A 400-megapixel PNG (48 kB on the wire) is a 413 naming its pixel count."""
    response = predict(torchserve, encode(Image.new("1", (20_000, 20_000)), "PNG"))
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "image_too_large"
    assert "400,000,000 pixels" in response.json()["error"] and f"{MAX_PIXELS:,}" in response.json()["error"]


def test_float_tiff_is_scaled_like_any_other_image(torchserve, val_images):
    """A real slice stored as 0..1 float32 TIFF is answered as the same slice in 8 bits.

    Before, Pillow's float-to-grey conversion clipped 0..1 to black; now floats are min-max
    stretched as 16-bit images are, so both files below become the same pixels.
    """
    grey = np.asarray(Image.open(val_images["meningioma"][0]).convert("L"), dtype=np.float32)
    floats = (grey - grey.min()) / (grey.max() - grey.min())
    as_float = predict(torchserve, encode(Image.fromarray(floats, mode="F"), "TIFF"))
    as_png = predict(torchserve, encode(Image.fromarray((floats * 255).round().astype(np.uint8)), "PNG"))
    assert as_float.status_code == 200, as_float.text
    assert as_float.json()["label"] == as_png.json()["label"] == "meningioma"
    assert as_float.json()["confidence"] == pytest.approx(as_png.json()["confidence"], abs=1e-3)
