"""Build the container images for real, run them, get a prediction, then run the compose stack.

Slow (minutes: apt in the image build, a 1 GB image), so `make test` skips it and
`make test-docker` runs it: that target starts a private engine if none answers
(docker/local-engine.sh), makes the Debian base image, the wheelhouse and the .mar, then sets
NEUROSCAN_DOCKER_TESTS=1. Containers use the host's network (the private engine has no bridge)
and bind 127.0.0.1 on free ports; the compose stack (docker/compose.host.yaml) needs its usual
ports free.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from browser_fixtures import sign_in_and_analyse
from dashboard_fixtures import mri_image
from ops_fixtures import free_port, query_until
from orthanc_fixture import network_address
from PIL import Image
from pydicom.data import get_testdata_file

from neuroscan.classes import CLASSES

ROOT = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER_CLI", shutil.which("docker") or "/usr/bin/docker")
BASE_IMAGE = os.environ.get("NEUROSCAN_BASE_IMAGE", "neuroscan/debian-base:bookworm")
TAG = os.environ.get("NEUROSCAN_TAG", "test")
# What the compose stack binds on the host's loopback in host-network mode: TorchServe's REST and
# gRPC ports, the dashboard, Prometheus, Orthanc (DICOM, HTTP) and the PACS worker's metrics.
STACK_PORTS = (8080, 8081, 8082, 7070, 7071, 8000, 9090, 4242, 8042, 9103)
STACK_ADMIN = ("admin", "compose-test-password")

pytestmark = pytest.mark.skipif(
    os.environ.get("NEUROSCAN_DOCKER_TESTS") != "1",
    reason="container build+run takes minutes: run `make test-docker`",
)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert out.returncode == 0, f"docker {' '.join(args[:3])}...: {out.stderr[-3000:]}"
    return out


def build(dockerfile: str, image: str) -> float:
    """``docker build`` from the repository root; returns the seconds it took."""
    start = time.monotonic()
    out = subprocess.run(
        [DOCKER, "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
         "-f", f"docker/{dockerfile}", "-t", image, "."],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
        env={**os.environ, "DOCKER_BUILDKIT": "1"}, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return time.monotonic() - start


def wait_healthy(container: str, timeout: float) -> None:
    """Until Docker's own HEALTHCHECK says healthy: tests the image's check as well.

    Fails at once when the container exits or Docker marks it unhealthy (its start period is
    over and the check kept failing), with the container's last log lines.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker("inspect", container).stdout)[0]["State"]
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return
        if not state["Running"] or health == "unhealthy" or time.monotonic() > deadline:
            logs = docker("logs", "--tail", "80", container, check=False)
            pytest.fail(f"{container}: running={state['Running']} health={health}\n"
                        f"{logs.stdout[-6000:]}\n{logs.stderr[-3000:]}")
        time.sleep(2)


def assert_json_logs(stdout: str) -> None:
    """Every line after start-up is one JSON object (config/log4j2-json.xml), access log included.

    Three lines before "Model server started." come from the JVM and log4j before logging is
    configured (System.out), and cannot be formatted by it.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    started = next(i for i, line in enumerate(lines) if "Model server started" in line)
    records = [json.loads(line) for line in lines[started + 1:]]
    loggers = {r.get("logger") for r in records}
    assert "ACCESS_LOG" in loggers and "MODEL_LOG" in loggers
    assert any("POST /predictions/brain_tumor" in r.get("message", "") for r in records)


@pytest.fixture(scope="module")
def engine():
    out = subprocess.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"no Docker engine answers ({out.stderr.strip()}); `make test-docker` starts one")
    return out.stdout.strip()


def png_slice() -> bytes:
    image = Image.new("L", (256, 256), 10)
    for y in range(40, 216):
        for x in range(40, 216):
            image.putpixel((x, y), 90 + (x * 7 + y * 3) % 100)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_server_image_builds_runs_and_predicts(engine):
    image = f"neuroscan/model-server:{TAG}"
    seconds = build("Dockerfile.server", image)
    size_mb = int(docker("image", "inspect", image, "--format", "{{.Size}}").stdout) / 1e6
    print(f"\nserver image {image}: built in {seconds:.0f} s, {size_mb:.0f} MB (base {BASE_IMAGE})")

    ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc_i", "grpc_m")}
    name = f"neuroscan-test-server-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "host", "--read-only",
           "--tmpfs", "/tmp", "--tmpfs", "/srv/neuroscan/logs:uid=10001,gid=10001",
           "--tmpfs", "/srv/neuroscan/run:uid=10001,gid=10001",
           "--tmpfs", "/srv/neuroscan/model-store:uid=10001,gid=10001",
           "-e", "TS_BIND_ADDRESS=127.0.0.1",
           "-e", f"TS_INFERENCE_PORT={ports['inference']}", "-e", f"TS_MANAGEMENT_PORT={ports['management']}",
           "-e", f"TS_METRICS_PORT={ports['metrics']}", "-e", f"TS_GRPC_INFERENCE_PORT={ports['grpc_i']}",
           "-e", f"TS_GRPC_MANAGEMENT_PORT={ports['grpc_m']}", image)
    try:
        wait_healthy(name, timeout=240)
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        keys = json.loads(docker("exec", name, "cat", "/srv/neuroscan/run/key_file.json").stdout)
        auth = {"Authorization": f"Bearer {keys['inference']['key']}"}

        answer = httpx.post(f"http://127.0.0.1:{ports['inference']}/predictions/brain_tumor",
                            content=png_slice(), headers=auth, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["label"] in CLASSES
        assert set(body["probabilities"]) == set(CLASSES)
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
        assert body["model_version"]

        # a JPEG-LS compressed DICOM, as PACS exports them: GDCM must be in the image
        dicom = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")).read_bytes()
        answer = httpx.post(f"http://127.0.0.1:{ports['inference']}/predictions/brain_tumor",
                            content=dicom, headers=auth, timeout=60)
        assert answer.status_code == 200 and answer.json()["format"] == "dicom", answer.text

        # no token, no prediction: token auth is on in the image's default config
        refused = httpx.post(f"http://127.0.0.1:{ports['inference']}/predictions/brain_tumor",
                             content=png_slice(), timeout=30)
        assert refused.status_code in (400, 401)
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
        assert "ts_inference_requests_total" in metrics
        assert_json_logs(docker("logs", name).stdout)

        # graceful stop: the entrypoint turns SIGTERM into `torchserve --stop`
        start = time.monotonic()
        docker("stop", "-t", "30", name, timeout=60)
        assert time.monotonic() - start < 25, "SIGTERM was not handled: docker had to SIGKILL"
        assert json.loads(docker("inspect", name).stdout)[0]["State"]["ExitCode"] == 0
    finally:
        docker("rm", "-f", name, check=False)


def test_dashboard_image_builds_and_serves_metrics(engine, tmp_path):
    image = f"neuroscan/dashboard:{TAG}"
    seconds = build("Dockerfile.dashboard", image)
    size_mb = int(docker("image", "inspect", image, "--format", "{{.Size}}").stdout) / 1e6
    print(f"\ndashboard image {image}: built in {seconds:.0f} s, {size_mb:.0f} MB (base {BASE_IMAGE})")
    assert size_mb < 700, "the dashboard image should not carry torch"

    port = free_port()
    name = f"neuroscan-test-dashboard-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "host", "--read-only",
           "--tmpfs", "/tmp", "--tmpfs", "/srv/neuroscan/dashboard:uid=10001,gid=10001",
           "--tmpfs", "/srv/neuroscan/data:uid=10001,gid=10001",
           "-e", "NEUROSCAN_HOST=127.0.0.1", "-e", f"NEUROSCAN_PORT={port}",
           "-e", f"NEUROSCAN_INFERENCE_URL=http://127.0.0.1:{free_port()}",
           "-e", "NEUROSCAN_ADMIN_PASSWORD=container-test-password", image)
    try:
        wait_healthy(name, timeout=120)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "neuroscan_dashboard" in metrics.text
        login = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert login.status_code in (200, 307)  # the sign-in page or a redirect to it
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        missing = docker("exec", name, "python3", "-c", "import torch", check=False)
        assert missing.returncode != 0
    finally:
        docker("rm", "-f", name, check=False)


def test_orthanc_image_takes_c_stores_from_allowed_senders_only(engine, tmp_path):
    """The PACS image: non-root, its account generated into the mounted home on first start and
    required, a C-STORE from 127.0.0.1 stored, one from this machine's network address refused."""
    image = f"neuroscan/orthanc:{TAG}"
    seconds = build("Dockerfile.orthanc", image)
    size_mb = int(docker("image", "inspect", image, "--format", "{{.Size}}").stdout) / 1e6
    print(f"\northanc image {image}: built in {seconds:.0f} s, {size_mb:.0f} MB (base {BASE_IMAGE})")
    home = tmp_path / "orthanc"
    home.mkdir()
    os.chown(home, 10001, 10001)
    http_port, dicom_port = free_port(), free_port()
    name = f"neuroscan-test-orthanc-{os.getpid()}"
    docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           "-v", f"{home}:/srv/neuroscan/orthanc", "-e", "NEUROSCAN_DICOM_SENDERS=127.0.0.1",
           "-e", "NEUROSCAN_ORTHANC_REMOTE_ACCESS=0", image,
           "--http-port", str(http_port), "--dicom-port", str(dicom_port))
    try:
        wait_healthy(name, timeout=120)
        account = json.loads((home / "credentials.json").read_text())
        url = f"http://127.0.0.1:{http_port}"
        assert httpx.get(f"{url}/system", timeout=10).status_code == 401
        assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
        slices = [get_testdata_file("MR_small.dcm")]
        for host in ("127.0.0.1", network_address()):
            subprocess.run(["storescu", "-aec", "NEUROSCAN", host, str(dicom_port), *slices], check=True,
                           capture_output=True, timeout=60)
        stored = httpx.get(f"{url}/instances", auth=(account["username"], account["password"]), timeout=10).json()
        assert len(stored) == 1  # the same file from the network address was refused
        assert f"refused a C-STORE from {network_address()}" in docker("logs", name).stderr
    finally:
        docker("rm", "-f", name, check=False)


def host_compose(project: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``docker/images.sh host-compose``: the stack of docker/compose.yaml on the host's network."""
    env = {**os.environ, "NEUROSCAN_TAG": TAG, "NEUROSCAN_ADMIN_PASSWORD": STACK_ADMIN[1], "PY": sys.executable}
    out = subprocess.run(["sh", "docker/images.sh", "host-compose", "-p", project, *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"compose {' '.join(args)}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def busy_ports(ports: tuple[int, ...]) -> list[int]:
    """The ports of ``ports`` something already listens on at 127.0.0.1."""
    busy = []
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def test_compose_stack_serves_clinicians_and_is_scraped(engine, browser):
    """compose.yaml's services together (the images the tests above built): the dashboard reaches
    the model server by its service name with the tokens from the shared volume, Orthanc and the
    PACS worker come up with the generated account, and Prometheus scrapes all three apps."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if busy := busy_ports(STACK_PORTS):
        pytest.fail(f"the compose stack needs 127.0.0.1 ports {busy} free (stop `make serve` first)")
    build("Dockerfile.prometheus", f"neuroscan/prometheus-debian:{TAG}")
    project = f"nstest{os.getpid()}"
    host_compose(project, "up", "-d", "--no-build")
    try:
        for service in ("model-server", "dashboard", "orthanc", "pacs-worker", "prometheus"):
            wait_healthy(host_compose(project, "ps", "-q", service).stdout.strip(), timeout=240)

        # a clinician's journey in Chromium: dashboard -> http://model-server:8080 with the key file
        sign_in_and_analyse(browser, "http://127.0.0.1:8000", STACK_ADMIN, mri_image("glioma"))
        # the operator page describes the model through the management API (management key)
        browser.get("http://127.0.0.1:8000/operator")
        WebDriverWait(browser, 30).until(lambda page: ": READY" in page.find_element(By.TAG_NAME, "body").text)

        prometheus = "http://127.0.0.1:9090"
        for job in ("torchserve", "dashboard", "pacs-worker"):
            query_until(prometheus, f'up{{job="{job}"}} == 1', timeout=60)
        query_until(prometheus, 'ts_inference_requests_total{model_name="brain_tumor"} >= 1', timeout=60)
        query_until(prometheus, 'neuroscan_dashboard_analyses_total{label="glioma"} >= 1', timeout=60)
        rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert any(rule["name"] == "NeuroScanModelServerDown" for group in rules for rule in group["rules"])

        host_compose(project, "down")  # containers go, named volumes stay
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout
        assert {f"{project}_{name}" for name in ("case-history", "model-store", "torchserve-run",
                                                   "prometheus-data", "orthanc-home")} <= set(volumes.split())
    finally:
        host_compose(project, "down", "-v", "--remove-orphans")

