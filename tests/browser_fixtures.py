"""A real headless Chromium (Selenium + Debian's chromedriver) and the clinician's main journey in it.

Shared by the dashboard's browser test (``python -m dashboard`` beside the suite's TorchServe)
and the compose test (the dashboard container beside the model-server container), so both
drive the page the same way: sign in with the keyboard, upload a slice, wait for the result.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from deps import missing

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1280,1000")
INFERENCE_TIMEOUT_S = 60


@pytest.fixture
def browser() -> Iterator:
    """Headless Chromium via Selenium; skipped (under CI=true: failed) where Chromium or chromedriver is missing."""
    from selenium import webdriver

    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        missing("no Chromium/chromedriver on this machine (make test-deps installs chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


def sign_in(browser, url: str, credentials: tuple[str, str], path: str = "/") -> None:
    """Open ``path`` at ``url``, get sent to the sign-in page and sign in with the keyboard only."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, INFERENCE_TIMEOUT_S)
    browser.get(url + path)
    wait.until(seen.url_contains("/login"))
    username = wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "input[autocomplete=username]")))
    wait.until(lambda _: browser.switch_to.active_element == username)  # focused on arrival
    # keys typed before NiceGUI's websocket handshake are re-sent on independent 10 ms timers, so the
    # Enter could overtake the password's last characters on a slow machine: type once connected
    wait.until(lambda _: browser.execute_script("return window.did_handshake === true"))
    username.send_keys(credentials[0], Keys.TAB)  # keyboard only: Tab to the password, Enter to sign in
    browser.switch_to.active_element.send_keys(credentials[1], Keys.ENTER)
    try:
        wait.until(lambda _: "/login" not in browser.current_url)
    except TimeoutException:
        pytest.fail(f"still on the sign-in page; it says: {browser.find_element(By.TAG_NAME, 'body').text!r}")


def sign_in_and_analyse(browser, url: str, credentials: tuple[str, str], image: Path):
    """Sign in at ``url`` with the keyboard, upload ``image``; return the heatmap element once drawn."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, INFERENCE_TIMEOUT_S)
    sign_in(browser, url, credentials)
    try:
        uploader = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".q-uploader input[type=file]")))
    except TimeoutException:
        pytest.fail(f"no upload area after signing in; the page says: {browser.find_element(By.TAG_NAME, 'body').text!r}")
    uploader.send_keys(str(image))
    try:
        wait.until(seen.visibility_of_element_located((By.XPATH, "//*[contains(text(), 'Calibrated confidence')]")))
    except TimeoutException:
        pytest.fail(f"no diagnosis after the upload; the page says: {browser.find_element(By.TAG_NAME, 'body').text!r}")
    heatmap = wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "img[alt^='Grad-CAM heatmap']")))
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap))
    return heatmap


def hottest_red(screenshot: Path, rect: dict) -> int:
    """The largest red-minus-blue value inside ``rect`` of the screenshot (0 for a grey MRI)."""
    from PIL import Image

    box = (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])
    pixels = Image.open(screenshot).convert("RGB").crop(tuple(map(round, box))).getdata()
    return max(red - blue for red, _, blue in pixels)
