"""The dashboard in a real headless Chromium: sign in, upload an MRI slice, see diagnosis and heatmap.

The app runs as ``python -m dashboard`` in a subprocess (the entry point ``make serve`` uses) and
Selenium drives Debian's ``chromium`` through ``chromedriver``. The screenshot lands in
``var/screenshots/`` (git-ignored) for a human to look at.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashboard_fixtures import CLINICIAN, REPO_ROOT, mri_image
from ops_fixtures import free_port

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1280,1000")
INFERENCE_TIMEOUT_S = 60


@pytest.fixture
def browser() -> Iterator:
    """Headless Chromium via Selenium; skipped only where no Chromium or chromedriver is installed."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no Chromium/chromedriver on this machine (make installs Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


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
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, INFERENCE_TIMEOUT_S)
    browser.get(dashboard_url + "/")
    wait.until(seen.url_contains("/login"))
    username = wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "input[autocomplete=username]")))
    wait.until(lambda _: browser.switch_to.active_element == username)  # focused on arrival
    # keys typed before NiceGUI's websocket handshake are re-sent on independent 10 ms timers, so the
    # Enter could overtake the password's last characters on a slow machine: type once connected
    wait.until(lambda _: browser.execute_script("return window.did_handshake === true"))
    username.send_keys(CLINICIAN[0], Keys.TAB)  # keyboard only: Tab to the password, Enter to sign in
    browser.switch_to.active_element.send_keys(CLINICIAN[1], Keys.ENTER)
    try:
        uploader = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".q-uploader input[type=file]")))
    except TimeoutException:
        pytest.fail(f"no upload area after signing in; the page says: {browser.find_element(By.TAG_NAME, 'body').text!r}")
    uploader.send_keys(str(mri_image("glioma")))
    wait.until(seen.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'Calibrated confidence')]")))
    heatmap = wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "img[alt^='Grad-CAM heatmap']")))
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    laptop = _screenshot(browser, "dashboard-new-case-laptop.png")
    assert _hottest_red(laptop, heatmap.rect) > 100  # the heatmap's hot spot is really drawn on the image

    browser.set_window_size(820, 1180)  # a tablet held upright: nothing may need sideways scrolling
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(browser, "dashboard-new-case-tablet.png")


def _screenshot(browser, name: str) -> Path:
    path = SCREENSHOTS / name
    assert browser.save_screenshot(str(path))
    return path


def _hottest_red(screenshot: Path, rect: dict) -> int:
    """The largest red-minus-blue value inside ``rect`` of the screenshot (0 for a grey MRI)."""
    from PIL import Image

    box = (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])
    pixels = Image.open(screenshot).convert("RGB").crop(tuple(map(round, box))).getdata()
    return max(red - blue for red, _, blue in pixels)
