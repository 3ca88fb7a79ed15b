"""A real Orthanc (Debian's package) started from config/orthanc.json, and the PACS worker beside it.

Orthanc runs on free ports under a temporary home with generated credentials, exactly as
``python -m pacs.orthanc`` starts it for ``make serve``; the worker is the real ``python -m pacs``
process, pointed at that Orthanc and at the session's TorchServe by environment variables.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pacs.orthanc import environment, runtime_config
from tests.torchserve_fixture import REPO, free_ports


@dataclass
class Orthanc:
    """Where the test PACS answers and its generated account."""

    url: str
    dicom_port: int
    home: Path

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"

    @property
    def auth(self) -> tuple[str, str]:
        raw = json.loads(self.credentials_file.read_text())
        return raw["username"], raw["password"]

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", auth=self.auth, timeout=30, **kwargs)

    def store(self, files: list[Path]) -> None:
        """C-STORE ``files`` to AE NEUROSCAN with dcmtk's storescu, as a modality would (with Nagle's
        algorithm off, as the README advises for DCMTK-based senders)."""
        subprocess.run(["storescu", "-aec", "NEUROSCAN", "127.0.0.1", str(self.dicom_port), *map(str, files)],
                       check=True, capture_output=True, timeout=120, env=environment())


def network_address() -> str:
    """This machine's address on its network (not loopback): what Orthanc sees as another host.
    Connecting a UDP socket sends nothing; it only picks the interface a packet out would use."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    assert not address.startswith("127."), "this machine has no network address to send from"
    return address


def wait_until(condition, timeout: float = 60.0, step: float = 0.25):
    """Poll ``condition`` until it returns something truthy; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout:.0f}s")
        time.sleep(step)
    return result


def start_orthanc(home: Path, http_port: int, dicom_port: int) -> tuple[Orthanc, subprocess.Popen]:
    """Orthanc on these ports under ``home`` (its account is made on the first start), once it answers."""
    config = runtime_config(home, http_port, dicom_port)
    with open(home / "orthanc.log", "ab") as log:
        process = subprocess.Popen(["Orthanc", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=environment())
    server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, home)
    wait_until(lambda: _answers(server), timeout=60)
    return server, process


def stop_orthanc(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Orthanc:
    server, process = start_orthanc(tmp_path_factory.mktemp("orthanc"), *free_ports(2))
    try:
        yield server
    finally:
        stop_orthanc(process)


def _answers(server: Orthanc) -> bool:
    try:
        return server.get("/system").status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Worker:
    """A running ``python -m pacs`` process and where it keeps its results."""

    process: subprocess.Popen
    results_db: Path
    env: dict[str, str]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)


def start_worker(home: Path, orthanc: Orthanc, torchserve, results_db: Path | None = None,
                 **settings: str) -> Worker:
    """The PACS worker as its own process, on this test's Orthanc and TorchServe; ``settings``
    override config/pacs.toml keys (``key_check_s="2"``)."""
    home.mkdir(parents=True, exist_ok=True)
    results_db = results_db or home / "results.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "NEUROSCAN_PACS_PACS_URL": orthanc.url, "NEUROSCAN_PACS_CREDENTIALS_FILE": str(orthanc.credentials_file),
           "NEUROSCAN_PACS_INFERENCE_URL": torchserve.inference_url,
           "NEUROSCAN_PACS_MANAGEMENT_URL": torchserve.management_url,
           "NEUROSCAN_PACS_KEY_FILE": str(torchserve.key_file), "NEUROSCAN_PACS_RESULTS_DB": str(results_db),
           "NEUROSCAN_PACS_METRICS_PORT": str(free_ports(1)[0]), "NEUROSCAN_PACS_POLL_INTERVAL_S": "0.3",
           "NEUROSCAN_PACS_RETRY_INTERVAL_S": "1",
           **{f"NEUROSCAN_PACS_{key.upper()}": value for key, value in settings.items()}}
    log = home / f"worker-{time.monotonic_ns()}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "pacs"], cwd=REPO, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    return Worker(process, results_db, env, log)
