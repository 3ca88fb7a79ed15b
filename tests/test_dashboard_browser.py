"""The dashboard in a real headless Chromium: a slice's diagnosis and heatmap, and scrolling a study.

The app runs as ``python -m dashboard`` in a subprocess (the entry point ``make serve`` uses) and
Selenium drives Debian's ``chromium`` through ``chromedriver``. The screenshot lands in
``var/screenshots/`` (git-ignored) for a human to look at.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
from browser_fixtures import hottest_red, sign_in, sign_in_and_analyse
from dashboard_fixtures import CLINICIAN, REPO_ROOT, mri_image
from ops_fixtures import free_port
from study_fixtures import (
    GLIOMA_RUN,
    mr_study,
    orthanc_id,
    record_analysis,
    store_in_orthanc,
)

from neuroscan.study_results import StudyResults

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"


@pytest.fixture
def dashboard_url(served, tmp_path: Path) -> Iterator[str]:
    """``python -m dashboard`` beside the session's TorchServe."""
    with _dashboard(tmp_path) as url:
        yield url


@pytest.fixture
def pacs_dashboard_url(pacs_connected, tmp_path: Path) -> Iterator[str]:
    """``python -m dashboard`` beside the session's Orthanc (no TorchServe: the study's results are in the store)."""
    with _dashboard(tmp_path) as url:
        yield url


@contextmanager
def _dashboard(tmp_path: Path) -> Iterator[str]:
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



def test_scroll_a_study_with_arrow_keys_and_wheel_and_toggle_its_heatmap(browser, pacs_dashboard_url: str,
                                                                         pacs_connected, orthanc) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    made = mr_study(len(GLIOMA_RUN), accession=f"BRW{time.monotonic_ns() % 10**8}")
    store_in_orthanc(orthanc, made)
    record_analysis(StudyResults(pacs_connected.study_results), made, GLIOMA_RUN, orthanc_id=partial(orthanc_id, orthanc))
    sign_in(browser, pacs_dashboard_url, CLINICIAN, f"/studies/{made.study_uid}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 30)
    view = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "img[alt='Slice as seen by the model']")))
    heatmap = browser.find_element(By.CSS_SELECTOR, "img[alt='Grad-CAM heatmap of this slice']")

    def showing(number: int) -> None:
        """Wait for slice ``number`` with its pixels drawn (fetched from Orthanc and decoded)."""
        wait.until(lambda _: f"Slice {number} of {len(GLIOMA_RUN)}" in browser.find_element(By.TAG_NAME, "body").text)
        wait.until(lambda _: browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", view))

    def red() -> int:
        return hottest_red(_screenshot(browser, "dashboard-study.png"), view.rect)

    showing(3)  # the first key slice, with its heatmap
    wait.until(lambda _: heatmap.is_displayed())
    assert red() > 100
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    showing(4)
    ActionChains(browser).send_keys(Keys.ARROW_DOWN).perform()
    showing(5)
    wait.until(lambda _: not heatmap.is_displayed())  # nothing tumour-like here: no heatmap
    assert red() < 40
    ActionChains(browser).send_keys(Keys.ARROW_UP).perform()
    showing(4)
    wait.until(lambda _: heatmap.is_displayed())
    assert browser.execute_script("return window.scrollY") == 0  # the keys moved slices, not the page

    browser.find_element(By.XPATH, "//*[contains(text(), 'Show heatmap')]").click()
    wait.until(lambda _: not heatmap.is_displayed())
    assert red() < 40
    ActionChains(browser).send_keys("h").perform()  # and back on from the keyboard
    wait.until(lambda _: heatmap.is_displayed())

    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(view), 0, 120).perform()
    showing(5)
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(view), 0, -120).perform()
    showing(4)
    assert red() > 100
    browser.set_window_size(820, 1180)  # a tablet held upright: nothing may need sideways scrolling
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(browser, "dashboard-study-tablet.png")

    browser.get(pacs_dashboard_url + "/studies")  # and the study on the worklist, the tumour first
    wait.until(lambda _: f"accession {made.qido['AccessionNumber']}" in browser.find_element(By.TAG_NAME, "body").text)
    first_row = browser.find_element(By.XPATH, "//a[text()='Open study']/..")
    assert "Suspected glioma" in first_row.text
    _screenshot(browser, "dashboard-worklist.png")
