"""Shared fixtures: a real TorchServe (torchserve_fixture), the dashboard's, the ops and the browser fixtures."""

from pathlib import Path

import pytest
from deps import missing

from neuroscan.classes import CLASSES

pytest_plugins = ["torchserve_fixture", "dashboard_fixtures", "ops_fixtures", "browser_fixtures", "orthanc_fixture"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri" / "Training"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(available, reason): runs only where a test dependency is installed")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply ``deps.needs`` marks before the test's fixtures start anything."""
    for mark in item.iter_markers("needs"):
        if not mark.kwargs["available"]:
            missing(mark.kwargs["reason"])


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
