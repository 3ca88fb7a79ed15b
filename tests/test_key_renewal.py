"""TorchServe's keys expire: the dashboard's client renews them, follows a key file rewritten under it,
and picks up a restarted TorchServe, all without restarting the dashboard.

A TorchServe of its own with ``token_expiration_min=1`` (the shipped value is a day), so "past expiry"
is a minute away; the tests sleep through real expiry instead of faking a stale key. Each test
compares the never-expiring API key before and after: unchanged means the same TorchServe process
(the keys were renewed), changed means it restarted.
"""

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from dashboard_fixtures import (
    ADMIN,
    CLINICIAN,
    count,
    eventually,
    mri_image,
    point_at,
    sign_in,
    upload,
)
from nicegui.testing import User
from torchserve_fixture import TorchServe, restart_torchserve, running_torchserve

from dashboard.client import TorchServeClient
from dashboard.settings import load_settings

pytestmark = pytest.mark.asyncio
REPO = Path(__file__).resolve().parents[1]
INFERENCE_WAIT = 300  # retries of 0.1 s


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory) -> TorchServe:
    """TorchServe on the shipped config, except that its keys last one minute."""
    base = (REPO / "config" / "config.properties").read_text()
    assert "token_expiration_min=1440" in base
    with running_torchserve(tmp_path_factory.mktemp("short-keys"),
                            base.replace("token_expiration_min=1440", "token_expiration_min=1")) as server:
        yield server


@pytest.fixture
def short_served(dashboard_env, short_lived: TorchServe, monkeypatch: pytest.MonkeyPatch, caplog):
    """The dashboard on ``short_lived``, checking its keys every 2 s (request it before ``user``)."""
    point_at(short_lived, monkeypatch)
    monkeypatch.setenv("NEUROSCAN_KEY_CHECK_S", "2")
    caplog.set_level(logging.INFO, logger="neuroscan.torchserve_keys")
    return dashboard_env


def key_file(server: TorchServe) -> dict:
    return json.loads(server.key_file.read_text())


def expiry(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["expiration time"])


def refused(server: TorchServe, key: str) -> bool:
    """Whether TorchServe itself refuses ``key`` for inference now."""
    response = httpx.get(f"{server.inference_url}/ping", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return response.status_code == 400 and response.json()["type"] == "InvalidKeyException"


def renew_by_hand(server: TorchServe) -> httpx.Response:
    """What another client, or an operator's curl, does: a new inference key through the /token API."""
    api_key = key_file(server)["API"]["key"]
    return httpx.post(f"{server.management_url}/token", params={"type": "inference"},
                      headers={"Authorization": f"Bearer {api_key}"}, timeout=10)


async def sleep_past(at: datetime, extra_s: float = 3.0) -> None:
    """Sleep (letting the dashboard's loop run) until ``extra_s`` after ``at``."""
    await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + extra_s)


async def test_dashboard_analyses_a_slice_after_the_keys_it_started_with_expired(
        short_served, short_lived: TorchServe, user: User, caplog) -> None:
    first = key_file(short_lived)
    await sign_in(user, CLINICIAN)
    await sleep_past(max(expiry(first["inference"]), expiry(first["management"])))
    assert refused(short_lived, first["inference"]["key"])  # the key it started with is dead
    await upload(user, mri_image("glioma"))
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    now = key_file(short_lived)
    assert now["API"]["key"] == first["API"]["key"], "TorchServe restarted: the keys were not renewed"
    assert now["inference"]["key"] != first["inference"]["key"]
    assert "renewed the TorchServe inference key" in caplog.text
    assert "renewed the TorchServe management key" in caplog.text  # renewed while nobody used it


async def test_client_renews_an_expired_key_at_its_next_call(short_lived: TorchServe, monkeypatch, caplog) -> None:
    """No background loop here (as in a worker that was idle): the calls themselves find the key expired,
    and eight of them at once renew it once (a second renewal would void the key the first handed out)."""
    point_at(short_lived, monkeypatch)
    monkeypatch.setenv("NEUROSCAN_KEY_RENEW_MARGIN_S", "0")  # renew only once expired
    caplog.set_level(logging.INFO, logger="neuroscan.torchserve_keys")
    client = TorchServeClient(load_settings())
    held = await client.keys.token("inference")
    await sleep_past(client.key_expiry()["inference"], extra_s=1.0)
    assert refused(short_lived, held)
    assert await asyncio.gather(*(client.ping() for _ in range(8))) == ["Healthy"] * 8
    assert key_file(short_lived)["inference"]["key"] != held
    assert caplog.text.count("renewed the TorchServe inference key") == 1
    await client.aclose()


async def test_server_healthcheck_renews_keys_nobody_else_renewed(short_lived: TorchServe) -> None:
    """The container's health check (no dashboard around to renew): healthy past both keys' expiry."""
    before = key_file(short_lived)
    await sleep_past(max(expiry(before["inference"]), expiry(before["management"])), extra_s=1.0)
    assert refused(short_lived, before["inference"]["key"])
    ports = {f"TS_{api.upper()}_PORT": str(urlsplit(url).port)
             for api, url in (("inference", short_lived.inference_url), ("management", short_lived.management_url))}
    check = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(REPO / "docker" / "server-healthcheck.py")], capture_output=True,
        text=True, timeout=60, check=False, env={**os.environ, **ports, "TS_KEY_FILE": str(short_lived.key_file)})
    assert check.returncode == 0, check.stderr
    after = key_file(short_lived)
    assert after["API"]["key"] == before["API"]["key"]
    assert after["inference"]["key"] != before["inference"]["key"]
    assert after["management"]["key"] != before["management"]["key"]


async def test_client_follows_a_key_file_renewed_by_another_process(short_lived: TorchServe, monkeypatch,
                                                                     caplog) -> None:
    point_at(short_lived, monkeypatch)
    monkeypatch.setenv("NEUROSCAN_KEY_RENEW_MARGIN_S", "0")
    caplog.set_level(logging.INFO, logger="neuroscan.torchserve_keys")
    assert renew_by_hand(short_lived).status_code == 200  # a full minute left: no renewal due in this test
    client = TorchServeClient(load_settings())
    assert await client.ping() == "Healthy"
    held = await client.keys.token("inference")
    assert renew_by_hand(short_lived).status_code == 200 and refused(short_lived, held)
    assert await client.ping() == "Healthy"
    assert "picked up a changed TorchServe key file" in caplog.text
    assert "renewed the TorchServe" not in caplog.text  # it followed the file, it did not renew again
    await client.aclose()


async def test_operator_page_shows_when_the_keys_expire_and_renews_them(short_served, short_lived: TorchServe,
                                                                        user: User) -> None:
    assert renew_by_hand(short_lived).status_code == 200  # a full minute: the dashboard leaves it alone for 30 s
    shown = expiry(key_file(short_lived)["inference"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    await sign_in(user, ADMIN, "/operator")
    await user.should_see(f"Inference key: expires {shown}")
    await user.should_see(marker="key-expiry-management")
    before = key_file(short_lived)["inference"]["key"]
    user.find(marker="renew-keys").click()
    await user.should_see("Both keys renewed.")
    renewed = key_file(short_lived)["inference"]
    assert renewed["key"] != before
    await user.should_see(f"Inference key: expires {expiry(renewed).strftime('%Y-%m-%d %H:%M:%S UTC')}")


async def test_dashboard_picks_up_a_restarted_torchserve(short_served, short_lived: TorchServe, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image("glioma"))
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    api_key = key_file(short_lived)["API"]["key"]
    await asyncio.to_thread(restart_torchserve, short_lived)
    assert key_file(short_lived)["API"]["key"] != api_key, "TorchServe did not restart"
    await upload(user, mri_image("pituitary"))
    await eventually(lambda: count(user, "diagnosis") == 2, timeout=120)
