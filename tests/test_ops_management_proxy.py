"""The Kubernetes management proxy for real: Debian's nginx with the ConfigMap's site in front of a
TorchServe started with the cluster's config.properties (its own token check off).

What the cluster relies on: without the Secret's key nothing reaches TorchServe's management
API; with it an operator registers, scales, describes and removes a model through the proxy; a
proxy given an empty key refuses everything instead of opening up. The template is rendered
with envsubst limited to ${MANAGEMENT_KEY}, as the nginx image does; only the listen and
upstream ports are moved to free ones.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deps import needs
from ops_fixtures import by_kind
from torchserve_fixture import (
    free_ports,
    start_torchserve,
    stop_torchserve,
    write_config,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
KEY = "0123456789abcdef" * 4
pytestmark = needs(Path(NGINX).exists(), "Debian's nginx not installed (make test-deps)")


@pytest.fixture(scope="module")
def cluster_torchserve(tmp_path_factory) -> Iterator[str]:
    """TorchServe with the ConfigMap's config.properties, no model loaded; yields its management URL."""
    home = tmp_path_factory.mktemp("cluster-torchserve")
    (home / "tmp").mkdir()
    ports = free_ports(5)
    base = by_kind("ConfigMap", "neuroscan-model-server-config")["data"]["config.properties"]
    base = "\n".join(line for line in base.splitlines() if not line.startswith("load_models="))
    env = start_torchserve(home, write_config(home, ports, base), home / "model_store")
    url = f"http://127.0.0.1:{ports[1]}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/models"):
            assert time.monotonic() < deadline, (home / "launcher.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        stop_torchserve(home, env)


def _answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` yet (any status)."""
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.TransportError:
        return False


def start_proxy(root: Path, upstream: str, key: str) -> tuple[subprocess.Popen, str]:
    """nginx in the foreground with the ConfigMap's site rendered for ``key``; returns it and its URL."""
    (port,) = free_ports(1)
    template = by_kind("ConfigMap", "neuroscan-management-proxy")["data"]["management.conf.template"]
    site = subprocess.run(["envsubst", "${MANAGEMENT_KEY}"], input=template, capture_output=True, text=True,
                          env={"MANAGEMENT_KEY": key}, check=True).stdout
    site = site.replace("listen 8091;", f"listen 127.0.0.1:{port};")
    site = site.replace("http://127.0.0.1:8081;", f"{upstream};")
    root.mkdir()
    (root / "site.conf").write_text(site)
    (root / "nginx.conf").write_text(
        f"pid {root}/nginx.pid;\ndaemon off;\nevents {{}}\nhttp {{\n  access_log {root}/access.log;\n"
        f"  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  include {root}/site.conf;\n}}\n")
    process = subprocess.Popen([NGINX, "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not _answers(url):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "nginx did not start"
        time.sleep(0.2)
    return process, url


@pytest.fixture
def proxy(cluster_torchserve: str, tmp_path: Path) -> Iterator[str]:
    process, url = start_proxy(tmp_path / "nginx", cluster_torchserve, KEY)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_without_the_key_nothing_reaches_management(proxy: str):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {KEY}x"},
                    {"Authorization": KEY}, {"Authorization": f"bearer {KEY[:-1]}"}):
        answer = httpx.get(f"{proxy}/models", headers=headers, timeout=10)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["type"] == "InvalidKeyException"
    refused = httpx.post(f"{proxy}/models", params={"url": "brain_tumor.mar"}, timeout=10)
    assert refused.status_code == 401


def test_with_the_key_an_operator_registers_scales_and_removes_a_model(proxy: str):
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{proxy}/models", headers=auth, timeout=10).json() == {"models": []}
    registered = httpx.post(f"{proxy}/models", headers=auth, timeout=200, params={
        "url": "brain_tumor.mar", "model_name": "brain_tumor", "initial_workers": 1, "synchronous": "true"})
    assert registered.status_code == 200, registered.text
    try:
        scaled = httpx.put(f"{proxy}/models/brain_tumor", headers=auth, timeout=200,
                           params={"min_worker": 2, "synchronous": "true"})
        assert scaled.status_code == 200, scaled.text
        (described,) = httpx.get(f"{proxy}/models/brain_tumor", headers=auth, timeout=10).json()
        assert [w["status"] for w in described["workers"]] == ["READY", "READY"]
    finally:
        removed = httpx.delete(f"{proxy}/models/brain_tumor", headers=auth, timeout=120)
    assert removed.status_code == 200, removed.text


def test_a_proxy_without_a_key_refuses_instead_of_opening_up(cluster_torchserve: str, tmp_path: Path):
    process, url = start_proxy(tmp_path / "nginx", cluster_torchserve, "")
    try:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {KEY}"}):
            answer = httpx.get(f"{url}/models", headers=headers, timeout=10)
            assert answer.status_code == 503, (headers, answer.text)
            assert "torchserve-management-key" in answer.json()["message"]
    finally:
        process.terminate()
        process.wait(timeout=10)
