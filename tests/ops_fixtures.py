"""Fixtures for the operations tests: a local Sentry envelope recorder, free ports, PromQL polling,
the Kubernetes manifests.

Loaded by the suite's conftest (``pytest_plugins``). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "docker" / "k8s"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query_until(url: str, promql: str, timeout: float = 30.0) -> list[dict]:
    """Poll Prometheus' HTTP API at ``url`` until ``promql`` returns samples; return them."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert body["status"] == "success", body
        if body["data"]["result"]:
            return body["data"]["result"]
        assert time.monotonic() < deadline, f"no samples for {promql!r} after {timeout} s"
        time.sleep(0.5)


def docs(path: Path) -> list[dict]:
    """The non-empty YAML documents of ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (named ``name``) in docker/k8s: what the cluster really gets."""
    found = [d for p in (K8S.glob("*.yaml")) for d in docs(p)
             if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def parse_envelope(body: bytes) -> list[tuple[dict, bytes]]:
    """Split a Sentry envelope into ``(item_header, payload)`` pairs (envelope header dropped).

    Format: a JSON header line, then per item a JSON header line and a payload that is either
    ``length`` bytes long or runs to the next newline.
    """
    lines = body.split(b"\n", 1)
    rest = lines[1] if len(lines) > 1 else b""
    items = []
    while rest.strip():
        header_raw, _, rest = rest.partition(b"\n")
        header = json.loads(header_raw)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1:]
        items.append((header, payload))
    return items


@dataclass
class SentryRecorder:
    """What the fake Sentry saw: raw (decompressed) bodies and the events in them."""

    port: int
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dsn(self, project: int = 42) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/{project}"

    def events(self) -> list[dict]:
        """Every ``event`` item (errors) received so far, parsed."""
        with self.lock:
            bodies = list(self.bodies)
        return [
            json.loads(payload)
            for body in bodies
            for header, payload in parse_envelope(body)
            if header.get("type") == "event"
        ]

    def clear(self) -> None:
        with self.lock:
            self.bodies.clear()


@pytest.fixture
def sentry_recorder():
    """A real HTTP server on 127.0.0.1 that accepts Sentry envelopes and keeps them."""
    recorder = SentryRecorder(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding == "deflate":
                raw = zlib.decompress(raw)
            with recorder.lock:
                recorder.bodies.append(raw)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
