"""Shared fixtures: a real TorchServe (torchserve_fixture), the dashboard's, the ops and the browser fixtures."""

from pathlib import Path

import pytest

from neuroscan.classes import CLASSES

pytest_plugins = ["torchserve_fixture", "dashboard_fixtures", "ops_fixtures", "browser_fixtures", "orthanc_fixture"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri" / "Training"


@pytest.fixture(scope="session")
def mri_root() -> Path:
    """The real MRI images (../shared/data); tests that need them fail loudly without them."""
    if not DATA.is_dir():
        pytest.fail(f"real MRI data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def val_images(mri_root: Path) -> dict[str, list[Path]]:
    """A few validation-split images per class (never seen in training)."""
    from training.split import load_split

    split = load_split()
    return {name: [mri_root / rel for rel in split.val if rel.startswith(name + "/")][:8] for name in CLASSES}
