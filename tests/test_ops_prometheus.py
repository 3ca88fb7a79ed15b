"""A real Prometheus scrapes the real TorchServe from the suite's ``torchserve`` fixture.

Proves the pieces fit end to end: TorchServe's metrics endpoint is scrapeable without a token,
the metric names the alert rules and the queue-latency autoscaler use really exist, and the
rule file loads in a running server (not only in promtool's unit-test engine).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from deps import needs
from ops_fixtures import free_port, query_until
from PIL import Image

from neuroscan.classes import CLASSES

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = shutil.which("prometheus")
pytestmark = needs(PROMETHEUS is not None, "Debian's prometheus not installed (make test-deps)")


def png_slice() -> bytes:
    """A 256x256 greyscale image with a bright disc: decodes like a scan, needs no data set."""
    image = Image.new("L", (256, 256), 10)
    for y in range(256):
        for x in range(256):
            if (x - 128) ** 2 + (y - 128) ** 2 < 90 ** 2:
                image.putpixel((x, y), 120 + (x * y) % 60)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def inference_headers(torchserve) -> dict[str, str]:
    key_file = Path(torchserve.key_file) if getattr(torchserve, "key_file", None) else None
    if key_file and key_file.is_file():
        import json

        return {"Authorization": f"Bearer {json.loads(key_file.read_text())['inference']['key']}"}
    return {}


@pytest.fixture(scope="module")
def prometheus(torchserve, tmp_path_factory):
    """Debian's Prometheus on a free loopback port, scraping TorchServe every second."""

    work = tmp_path_factory.mktemp("prometheus")
    target = urlsplit(torchserve.metrics_url).netloc
    shutil.copy(ROOT / "config" / "alerts.yml", work / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "torchserve", "static_configs": [{"targets": [target]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (work / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not become ready in 30 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_torchserve_metrics_reach_prometheus(torchserve, prometheus):
    answer = httpx.post(f"{torchserve.inference_url}/predictions/{torchserve.model_name}",
                        content=png_slice(), headers=inference_headers(torchserve), timeout=60)
    assert answer.status_code in (200, 422), answer.text

    up = query_until(prometheus, 'up{job="torchserve"} == 1')
    assert up[0]["value"][1] == "1"

    requests = query_until(prometheus, f'ts_inference_requests_total{{model_name="{torchserve.model_name}"}} >= 1')
    assert float(requests[0]["value"][1]) >= 1
    # what the queue alert and the queue-latency autoscaler divide by each other
    query_until(prometheus, f'ts_queue_latency_microseconds{{model_name="{torchserve.model_name}"}}')
    # the error-rate alert's counters
    query_until(prometheus, 'Requests2XX or Requests4XX')

    if answer.status_code == 200:  # the handler's own counter, labelled by class
        label = answer.json()["label"]
        per_class = query_until(prometheus, f'PredictionsPerClass{{class="{label}"}} >= 1')
        assert per_class[0]["metric"]["class"] in CLASSES
    else:  # refused as not an MRI: the not-MRI alert's counter
        query_until(prometheus, 'RejectedInputs{reason="not_mri"} >= 1')


def test_alert_rules_load_and_evaluate_in_a_real_server(torchserve, prometheus):
    """All rules load healthy; the server-down alert settles quiet while TorchServe is scraped,
    and the dashboard-down alert goes pending, since this Prometheus has no dashboard job (a
    positive control that alerts really evaluate against live data)."""
    deadline = time.monotonic() + 30
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        evaluated = rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules.values())
        # before the first scrape `absent(up)` is briefly true, so wait for the state to settle
        if evaluated and rules["NeuroScanModelServerDown"]["state"] == "inactive" \
                and rules["NeuroScanDashboardDown"]["state"] != "inactive":
            break
        assert time.monotonic() < deadline, {n: r.get("state") for n, r in rules.items() if "state" in r}
        time.sleep(0.5)
    assert {g["name"] for g in groups} == {"neuroscan"}
    assert all(r["health"] == "ok" for r in rules.values()), [r for r in rules.values() if r["health"] != "ok"]
    assert rules["NeuroScanDashboardDown"]["alerts"][0]["labels"]["job"] == "dashboard"
