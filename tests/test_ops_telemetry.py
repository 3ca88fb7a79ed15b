"""Sentry, request ids and JSON logs from ``neuroscan.telemetry``.

Errors are raised in child processes that each play one component (handler, dashboard), with
``SENTRY_DSN`` pointing at a real local HTTP server that records envelopes; the test reads the
envelopes back and checks tags, release, request id, and that no image bytes or patient data
left the process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ops_fixtures import sentry_recorder  # noqa: F401  (fixture; works without conftest too)

from neuroscan import telemetry

ROOT = Path(__file__).resolve().parents[1]
# Markers that must never reach Sentry: a fake PNG payload and a patient's name.
PIXELS = b"\x89PNG\r\n\x1a\nNEUROSCAN-PIXELS-7f3a"
PATIENT = "Doe^Jane-NS-4471"

CHILD = textwrap.dedent(
    """
    import logging, sys
    from neuroscan import telemetry

    component, release, rid = sys.argv[1], sys.argv[2], sys.argv[3]
    assert telemetry.init_sentry(component, release) is True
    import sentry_sdk

    def decode(image_bytes, patient_name):
        raise ValueError("cannot decode upload")

    with telemetry.request_context(rid):
        sentry_sdk.set_extra("patient_name", PATIENT)
        sentry_sdk.set_extra("upload", PIXELS)
        sentry_sdk.add_breadcrumb(category="upload", message="got file",
                                  data={"file": PIXELS, "size": len(PIXELS)})
        try:
            decode(PIXELS, PATIENT)
        except ValueError:
            telemetry.capture_exception()
        logging.getLogger("neuroscan").error("worker failed for %s", "a case")
    sentry_sdk.flush(5)
    """
)


def run_component(component: str, release: str, rid: str, dsn: str) -> None:
    code = f"PIXELS = {PIXELS!r}\nPATIENT = {PATIENT!r}\n" + CHILD
    env = {**os.environ, "SENTRY_DSN": dsn, "PYTHONPATH": str(ROOT)}
    env.pop("SENTRY_ENVIRONMENT", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, component, release, rid],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("component", ["handler", "dashboard"])
def test_error_reaches_local_sentry_with_tags_and_no_phi(sentry_recorder, component):  # noqa: F811
    rid = f"req-{component}-0001"
    run_component(component, "lite0-2026.11.1", rid, sentry_recorder.dsn())

    events = sentry_recorder.events()
    errors = [e for e in events if e.get("exception")]
    assert errors, f"no exception event arrived; got {len(events)} events"
    event = errors[0]
    assert event["release"] == "lite0-2026.11.1"
    assert event["tags"]["component"] == component
    assert event["tags"]["model_version"] == "lite0-2026.11.1"
    assert event["tags"]["request_id"] == rid
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    # the logged error becomes an event too, tagged the same way
    assert any(e.get("logentry", {}).get("message", "").startswith("worker failed") for e in events)

    raw = b"\n".join(sentry_recorder.bodies)
    assert b"NEUROSCAN-PIXELS" not in raw
    assert PATIENT.encode() not in raw
    assert b'"vars"' not in raw  # no frame locals at all
    assert event["extra"]["patient_name"] == telemetry.REDACTED


def test_no_dsn_means_no_sentry(monkeypatch):
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert telemetry.init_sentry("handler", "v1") is False
    telemetry.capture_exception(RuntimeError("nowhere to go"))  # a silent no-op


def test_scrub_event_drops_request_body_and_credentials():
    event = {
        "request": {
            "data": {"file": "aGVsbG8="},
            "cookies": {"session": "x"},
            "headers": {"Authorization": "Bearer k", "X-Request-ID": "abc"},
        },
        "user": {"id": "clinician-1"},
        "contexts": {"case": {"PatientID": "12345", "label": "glioma"}},
    }
    out = telemetry.scrub_event(event, {"attachments": ["x"]})
    assert "data" not in out["request"] and "cookies" not in out["request"]
    assert out["request"]["headers"] == {"X-Request-ID": "abc"}
    assert "user" not in out
    assert out["contexts"]["case"] == {"PatientID": telemetry.REDACTED, "label": "glioma"}


def test_request_id_context_and_header_validation():
    assert telemetry.get_request_id() is None
    with telemetry.request_context("abc-123") as rid:
        assert rid == "abc-123"
        assert telemetry.outgoing_headers({"A": "b"}) == {"A": "b", "X-Request-ID": "abc-123"}
    assert telemetry.get_request_id() is None
    # an id that could inject log lines is replaced by a fresh one
    with telemetry.request_context("bad\nid") as rid:
        assert rid != "bad\nid" and len(rid) == 32


def test_json_logs_carry_component_and_request_id():
    stream = io.StringIO()
    handler = telemetry.configure_json_logging("dashboard", level="INFO", stream=stream)
    try:
        telemetry.configure_json_logging("dashboard", level="INFO", stream=stream)  # idempotent
        log = logging.getLogger("neuroscan.test")
        with telemetry.request_context("rid-42"):
            log.info("predicted %s", "glioma", extra={"latency_ms": 12.5, "image": b"\x00" * 10})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert len(lines) == 1
        rec = lines[0]
        assert rec["message"] == "predicted glioma"
        assert rec["component"] == "dashboard" and rec["request_id"] == "rid-42"
        assert rec["latency_ms"] == 12.5 and rec["image"] == telemetry.REDACTED
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_neuroscan_json", False)]:
            root.removeHandler(h)
        assert handler not in root.handlers


HANDLER_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import sentry_sdk

    sys.path.insert(0, "tests")
    import handler.brain_tumor_handler as module
    from test_handler_unit import RecordingContext

    model_dir, good = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    handler = module.BrainTumorHandler()
    handler.initialize(RecordingContext(model_dir))  # init_sentry runs here, as in a TorchServe worker
    real = module.decode_image

    def decoder_with_a_bug(data):
        if data == b"BOOM":
            raise RuntimeError("a decoder bug")
        return real(data)

    def batch(*ids):
        context = RecordingContext(model_dir, headers=[{"X-Request-ID": rid} for rid in ids])
        context.metrics = handler.context.metrics
        return context

    module.decode_image = decoder_with_a_bug
    handler.handle([{"body": good}, {"body": b"BOOM"}], batch("rid-good", "rid-boom"))
    handler.features = lambda tensor: 1 / 0  # a batch-wide failure, after decoding
    try:
        handler.handle([{"body": good}, {"body": good}], batch("rid-first", "rid-second"))
    except ZeroDivisionError:
        pass
    sentry_sdk.flush(5)
    """
)


def test_handler_errors_carry_the_request_ids_they_cost(sentry_recorder, tmp_path, val_images):  # noqa: F811
    """A decoder failure is tagged with its own request's id; a batch-wide one lists every id of the batch."""
    (tmp_path / "brain_tumor.safetensors").symlink_to(ROOT / "model_store" / "brain_tumor.safetensors")
    env = {**os.environ, "SENTRY_DSN": sentry_recorder.dsn(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", HANDLER_CHILD, str(tmp_path), str(val_images["glioma"][0])],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = {e["exception"]["values"][-1]["type"]: e for e in sentry_recorder.events() if e.get("exception")}
    assert errors["RuntimeError"]["tags"]["request_id"] == "rid-boom"
    assert errors["ZeroDivisionError"]["extra"]["request_ids"] == ["rid-first", "rid-second"]
    assert "request_id" not in errors["ZeroDivisionError"]["tags"]  # no one request to blame


def test_json_log_file_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path, monkeypatch):
    """10,000 lines (~2 MB) into a file capped at 0.1 MB with 3 backups: never more than 4 files of at
    most 0.1 MB each, and the newest lines are still there, as JSON."""
    monkeypatch.setenv("NEUROSCAN_LOG_MAX_MB", "0.1")
    monkeypatch.setenv("NEUROSCAN_LOG_BACKUPS", "3")
    path = tmp_path / "logs" / "dashboard.log"
    telemetry.configure_json_logging("dashboard", level="INFO", stream=io.StringIO(), log_file=str(path))
    try:
        log = logging.getLogger("neuroscan.test")
        for i in range(10_000):
            log.info("analysis %05d done", i, extra={"padding": "x" * 100})
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_neuroscan_json", False)]:
            root.removeHandler(h)
            h.close()
    files = sorted(path.parent.iterdir())
    assert [f.name for f in files] == ["dashboard.log", "dashboard.log.1", "dashboard.log.2", "dashboard.log.3"]
    assert all(f.stat().st_size <= 0.1 * 1024 * 1024 for f in files)
    assert json.loads(path.read_text().splitlines()[-1])["message"] == "analysis 09999 done"
