"""Pytest fixtures for the dashboard tests: isolated settings, accounts, and NiceGUI's simulated user.

Every test gets its own database, accounts file and session secret through ``NEUROSCAN_*``
variables, so tests never touch ``var/`` and never depend on each other. The ``user`` fixture is
NiceGUI's user simulation running the real entry point (``dashboard/__main__.py``); it is declared
here with pytest-asyncio so it works whatever the project's asyncio mode is. (Loading
``nicegui.testing.user_plugin`` as well would shadow it with NiceGUI's own ``user``, which needs
``asyncio_mode = auto`` and a ``main_file`` ini option; only its storage hook is reused here.)
"""

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from nicegui import ElementFilter, ui
from nicegui.testing import User
from nicegui.testing.general_fixtures import pytest_configure  # noqa: F401  (NiceGUI storage in a temp dir)
from nicegui.testing.user_simulation import user_simulation

from dashboard.auth import AccountStore

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_FILE = REPO_ROOT / "dashboard" / "__main__.py"
MRI_DATA = REPO_ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
ADMIN = ("admin", "admin-test-password")
CLINICIAN = ("clinician", "clinician-test-password")


@dataclass(frozen=True)
class DashboardEnv:
    """Where this test's dashboard keeps its state."""

    root: Path
    database: Path
    accounts: Path
    study_results: Path


@pytest.fixture(scope="session")
def accounts_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An accounts file with one admin and one clinician, hashed once per session (scrypt is slow)."""
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    store = AccountStore(path)
    store.add(*ADMIN, role="admin")
    store.add(*CLINICIAN, role="clinician")
    return path


@pytest.fixture
def dashboard_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accounts_template: Path) -> DashboardEnv:
    """Settings for one test; TorchServe and the PACS point at a closed port until a test says otherwise."""
    from ops_fixtures import (
        free_port,  # imported late: it is a plugin registered after this one
    )

    accounts = tmp_path / "accounts.json"
    shutil.copy(accounts_template, accounts)
    closed = f"http://127.0.0.1:{free_port()}"
    for key, value in {
        "DATABASE": tmp_path / "cases.sqlite3",
        "ACCOUNTS_FILE": accounts,
        "STORAGE_SECRET": "test-storage-secret",
        "KEY_FILE": tmp_path / "no_key_file.json",
        "INFERENCE_URL": closed,
        "MANAGEMENT_URL": closed,
        "METRICS_URL": closed,
        "CONNECT_TIMEOUT_S": "1",
        "STUDY_RESULTS_DATABASE": tmp_path / "results.sqlite3",
        "PACS_URL": closed,
        "PACS_CREDENTIALS_FILE": tmp_path / "no_pacs_credentials.json",
        "WORKLIST_DAYS": "0",  # the tests' studies have fixed dates
    }.items():
        monkeypatch.setenv(f"NEUROSCAN_{key}", str(value))
    monkeypatch.delenv("NEUROSCAN_ADMIN_PASSWORD", raising=False)
    return DashboardEnv(tmp_path, tmp_path / "cases.sqlite3", accounts, tmp_path / "results.sqlite3")


@pytest.fixture
def served(dashboard_env: DashboardEnv, torchserve, monkeypatch: pytest.MonkeyPatch) -> DashboardEnv:
    """Point the dashboard at the session's real TorchServe (request it before ``user``)."""
    point_at(torchserve, monkeypatch)
    return dashboard_env


def point_at(server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings (of the dashboard, or of a client built from ``load_settings()``) for ``server``."""
    monkeypatch.setenv("NEUROSCAN_INFERENCE_URL", server.inference_url)
    monkeypatch.setenv("NEUROSCAN_MANAGEMENT_URL", server.management_url)
    monkeypatch.setenv("NEUROSCAN_METRICS_URL", server.metrics_url)
    monkeypatch.setenv("NEUROSCAN_KEY_FILE", str(server.key_file))
    monkeypatch.setenv("NEUROSCAN_MODEL_NAME", server.model_name)


@pytest.fixture
def pacs_connected(dashboard_env: DashboardEnv, orthanc, monkeypatch: pytest.MonkeyPatch) -> DashboardEnv:
    """Point the dashboard at the session's real Orthanc (request it before ``user``)."""
    monkeypatch.setenv("NEUROSCAN_PACS_URL", orthanc.url)
    monkeypatch.setenv("NEUROSCAN_PACS_CREDENTIALS_FILE", str(orthanc.credentials_file))
    return dashboard_env


@pytest_asyncio.fixture
async def user(dashboard_env: DashboardEnv, caplog: pytest.LogCaptureFixture) -> AsyncIterator[User]:
    """NiceGUI's simulated user on the real app; fails the test on any ERROR log, as NiceGUI's does."""
    async with user_simulation(main_file=MAIN_FILE) as simulated:
        yield simulated
    errors = [record.getMessage() for record in caplog.get_records("call") if record.levelname == "ERROR"]
    if errors:
        pytest.fail(f"unexpected ERROR logs: {errors}", pytrace=False)


def submit_sign_in(user: User, username: str, password: str) -> None:
    """Fill in and send the sign-in form of the page that is open."""
    user.find("User name").type(username)
    user.find("Password").type(password)
    user.find(marker="sign-in").click()


async def sign_in(user: User, account: tuple[str, str], path: str = "/") -> None:
    """Open ``path``, get sent to the sign-in page, sign in and land back on ``path``."""
    await user.open(path)
    await user.should_see("Sign in")
    submit_sign_in(user, *account)
    await user.should_see(f"{account[0]} (", retries=50)  # pages may wait for TorchServe while loading


def mri_image(label: str = "glioma", index: int = 0) -> Path:
    """A real training image of class ``label`` from the shared data set."""
    return sorted((MRI_DATA / label).glob("*.jpg"))[index]


def dicom_file() -> Path:
    """pydicom's small MR slice (its patient name is ``CompressedSamples^MR1``)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm"))


async def upload(user: User, *files: Path | tuple[str, bytes]) -> None:
    """Drop files on the new-case page's upload area, as the browser's batch upload does."""
    items = [(f.name, f.read_bytes()) if isinstance(f, Path) else f for f in files]
    uploader = next(iter(user.find(marker="upload").elements))
    await uploader.handle_uploads([ui.upload.SmallFileUpload(name, "application/octet-stream", data)
                                   for name, data in items])


def count(user: User, marker: str) -> int:
    """How many elements with ``marker`` the page shows now."""
    with user:
        return len(list(ElementFilter(marker=marker, local_scope=False)))


def texts(user: User, marker: str) -> list[str]:
    """The texts of the labels with ``marker`` on the page now (notifications excluded)."""
    with user:
        return [element.text for element in ElementFilter(marker=marker, local_scope=False)]


async def eventually(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds (inference runs in the background), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.1)
