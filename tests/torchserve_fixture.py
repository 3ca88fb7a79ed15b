"""A real TorchServe, started once per test session from the built archive.

It runs in its own directory with its own ports (not 8080-8082, so it coexists with
`make serve`), its own TMPDIR/java.io.tmpdir (pid file and worker sockets live there) and its
own logs, and is stopped with ``torchserve --stop`` so Java and the workers go with it.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from handler.wait_ready import wait_ready

REPO = Path(__file__).resolve().parents[1]
MAR = REPO / "model_store" / "brain_tumor.mar"
TORCHSERVE = Path(sys.executable).parent / "torchserve"


@dataclass
class TorchServe:
    """Where a running TorchServe answers, and how to authenticate to it."""

    inference_url: str
    management_url: str
    metrics_url: str
    key_file: Path
    home: Path
    model_name: str = "brain_tumor"

    def key(self, kind: str) -> str:
        """Current token of ``kind`` (inference, management, API) from the key file."""
        return json.loads(self.key_file.read_text())[kind]["key"]

    def headers(self, kind: str = "inference") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(kind)}"}

    def management(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.management_url}{path}", headers=self.headers("management"),
                             timeout=120, **kwargs)

    def metric_values(self, name: str) -> dict[str, float]:
        """Prometheus samples whose name starts with ``name``: {line without value: value}."""
        text = httpx.get(f"{self.metrics_url}/metrics", timeout=10).text
        pattern = re.compile(rf"^({re.escape(name)}\S*) ([0-9.eE+-]+)$", re.MULTILINE)
        return {m.group(1): float(m.group(2)) for m in pattern.finditer(text)}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def write_config(home: Path, ports: list[int], base: str | None = None) -> Path:
    """``base`` (default config/config.properties) with this instance's ports and temp dir.

    Address lines are replaced, not edited, as docker/server-entrypoint.sh does, so a base
    without them (the Kubernetes ConfigMap's) works too.
    """
    text = (REPO / "config" / "config.properties").read_text() if base is None else base
    text = re.sub(r"^(inference|management|metrics)_address=.*\n?", "", text, flags=re.MULTILINE)
    for name, port in zip(("inference", "management", "metrics"), ports):
        text += f"\n{name}_address=http://127.0.0.1:{port}"
    text += f"\ngrpc_inference_port={ports[3]}\ngrpc_management_port={ports[4]}\n"
    text += f"vmargs=-Xmx1g -Djava.io.tmpdir={home / 'tmp'}\n"
    config = home / "config.properties"
    config.write_text(text)
    return config


def torchserve_env(home: Path, repo: Path = REPO) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(home / "tmp"), "LOG_LOCATION": str(home / "logs"),
            "METRICS_LOCATION": str(home / "logs"), "PYTHONPATH": str(repo)}


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory) -> Iterator[TorchServe]:
    with running_torchserve(tmp_path_factory.mktemp("torchserve")) as server:
        yield server


@contextlib.contextmanager
def running_torchserve(home: Path, base: str | None = None) -> Iterator[TorchServe]:
    """A TorchServe in ``home`` on free ports, from ``base`` (default config/config.properties), READY."""
    if not MAR.exists():
        pytest.fail(f"{MAR} is missing: run `make archive` (make test does)")
    (home / "tmp").mkdir()
    ports = free_ports(5)
    config = write_config(home, ports, base)
    store = home / "model_store"  # private, so tests can add versions without touching the repo
    env = start_torchserve(home, config, store, models="brain_tumor=brain_tumor.mar")
    server = TorchServe(*(f"http://127.0.0.1:{p}" for p in ports[:3]), key_file=home / "key_file.json", home=home)
    try:
        wait_ready(server.management_url, server.model_name, server.key_file, timeout=240)
        yield server
    finally:
        stop_torchserve(home, env)


def restart_torchserve(server: TorchServe) -> None:
    """Stop ``server`` and start it again on the same ports and directory (new keys), until READY."""
    env = torchserve_env(server.home)
    stop_torchserve(server.home, env)
    start_torchserve(server.home, server.home / "config.properties", server.home / "model_store",
                     models="brain_tumor=brain_tumor.mar")
    wait_ready(server.management_url, server.model_name, server.key_file, timeout=240)


def start_torchserve(home: Path, config: Path, store: Path, models: str | None = None, mar: Path = MAR,
                     repo: Path = REPO) -> dict[str, str]:
    """``torchserve --start`` in ``home`` with the archive ``mar`` (built in ``repo``) copied into
    ``store``; returns its environment."""
    env = torchserve_env(home, repo)
    store.mkdir(exist_ok=True)
    shutil.copy(mar, store / mar.name)
    command = [str(TORCHSERVE), "--start", "--ncs", "--ts-config", str(config), "--model-store", str(store),
               *(["--models", models] if models else [])]
    # The daemonised Java process inherits stdout/stderr: a pipe would never close, so log to a file.
    with open(home / "launcher.log", "wb") as log:
        subprocess.run(command, cwd=home, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    return env


def stop_torchserve(home: Path, env: dict[str, str]) -> None:
    """``torchserve --stop``: Java and its workers go together."""
    subprocess.run([str(TORCHSERVE), "--stop"], cwd=home, env=env, timeout=120, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
