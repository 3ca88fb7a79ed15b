"""The dashboard in a real headless Chromium: sign in, upload an MRI slice, see diagnosis and heatmap.

The app runs as ``python -m dashboard`` in a subprocess (the entry point ``make serve`` uses) and
Selenium drives Debian's ``chromium`` through ``chromedriver``. The screenshot lands in
``var/screenshots/`` (git-ignored) for a human to look at.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_fixtures import hottest_red, sign_in_and_analyse
from dashboard_fixtures import CLINICIAN, REPO_ROOT, mri_image
from ops_fixtures import free_port

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"


@pytest.fixture
def dashboard_url(served, tmp_path: Path) -> Iterator[str]:
    """``python -m dashboard`` on a free port, with the test's NEUROSCAN_* settings."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NICEGUI_"))}
    env.update(NEUROSCAN_PORT=str(port), PYTHONPATH=str(REPO_ROOT))
    log = (tmp_path / "dashboard.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "dashboard"], cwd=tmp_path, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, process, tmp_path / "dashboard.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the dashboard exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    pytest.fail(f"the dashboard did not start: {log.read_text()[-2000:]}")


def test_sign_in_upload_and_see_diagnosis_with_heatmap(browser, dashboard_url: str) -> None:
    heatmap = sign_in_and_analyse(browser, dashboard_url, CLINICIAN, mri_image("glioma"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    laptop = _screenshot(browser, "dashboard-new-case-laptop.png")
    assert hottest_red(laptop, heatmap.rect) > 100  # the heatmap's hot spot is really drawn on the image

    browser.set_window_size(820, 1180)  # a tablet held upright: nothing may need sideways scrolling
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(browser, "dashboard-new-case-tablet.png")


def _screenshot(browser, name: str) -> Path:
    path = SCREENSHOTS / name
    assert browser.save_screenshot(str(path))
    return path

