"""Errors, traces and logs shared by the TorchServe handler and the dashboard.

Why it lives in the core package: the ``.mar`` carries ``neuroscan/`` next to the handler, and
the dashboard imports the core anyway, so both components report errors and log lines the
same way without importing each other.

Three pieces:

* :func:`init_sentry` turns Sentry on only when ``SENTRY_DSN`` is set (no DSN, no network, no
  import of ``sentry_sdk``). Events carry ``component`` and ``release`` (the model version) as
  tags, and :func:`scrub_event` removes request bodies, attachments, any bytes-like value and
  any patient field before an event leaves the process: a medical-image product must never
  ship pixels or patient identifiers to an error tracker.
* A request id in a :class:`contextvars.ContextVar`: the dashboard makes one per upload, sends
  it as ``X-Request-ID`` to TorchServe (which hands request headers to the handler), and both
  sides log it and tag errors with it, so one id follows a request across the two processes.
* :func:`configure_json_logging`: one JSON object per line (ts, level, logger, message,
  component, request_id), which log shippers parse without regexes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
DSN_ENV = "SENTRY_DSN"
# Only ids we could have made ourselves are accepted from a header, so a caller cannot inject
# log lines or huge strings through it.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_request_id: ContextVar[str | None] = ContextVar("neuroscan_request_id", default=None)

# Keys whose values are patient data (DICOM attribute names in both spellings, and the
# dashboard's case fields). Matching is on the lower-cased key with separators removed.
PATIENT_KEYS = frozenset(
    k.replace("_", "").replace("-", "").lower()
    for k in (
        "patient", "patient_name", "patient_id", "patient_birth_date", "patient_sex",
        "patient_age", "patient_address", "PatientName", "PatientID", "PatientBirthDate",
        "PatientSex", "PatientAge", "OtherPatientIDs", "ReferringPhysicianName",
        "InstitutionName", "AccessionNumber", "StudyID", "birth_date", "date_of_birth",
        "dob", "mrn", "medical_record_number", "case_notes", "notes", "clinician",
        "filename", "file_name", "image", "image_bytes", "body", "data", "file", "files",
        "upload", "pixels", "pixel_array", "PixelData", "heatmap", "explanation",
    )
)
# Request parts that can hold uploads or credentials.
_REQUEST_DROP = ("data", "cookies", "query_string", "env")
_HEADER_DROP = frozenset({"authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization"})
_MAX_STRING = 2048  # longer strings are likely base64 payloads: cut them
REDACTED = "[redacted]"


# --------------------------------------------------------------------------- request ids
def new_request_id() -> str:
    """A fresh opaque id (32 hex characters, no patient or time information in it)."""
    return uuid.uuid4().hex


def get_request_id() -> str | None:
    """The id of the request this code runs for, or ``None`` outside any request."""
    return _request_id.get()


def set_request_id(value: str | None) -> Token:
    """Set the current id; keep the token to :meth:`ContextVar.reset` it."""
    return _request_id.set(value)


def clean_request_id(value: str | bytes | None) -> str | None:
    """A header value if it looks like an id we would issue, else ``None``."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "replace")
    if value and _REQUEST_ID_RE.match(value.strip()):
        return value.strip()
    return None


@contextlib.contextmanager
def request_context(request_id: str | bytes | None = None) -> Iterator[str]:
    """Run a block under ``request_id`` (a valid incoming id, or a new one); yields the id."""
    rid = clean_request_id(request_id) or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def outgoing_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus ``X-Request-ID`` for the current request (dashboard -> TorchServe)."""
    out = dict(headers or {})
    rid = get_request_id()
    if rid:
        out[REQUEST_ID_HEADER] = rid
    return out


# --------------------------------------------------------------------------- JSON logging
class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra={...}`` fields are kept if JSON-serialisable."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def __init__(self, component: str | None = None) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.component:
            out["component"] = self.component
        rid = getattr(record, "request_id", None) or get_request_id()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key in self._STANDARD or key in out or key.startswith("_"):
                continue
            out[key] = _scrub(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_json_logging(
    component: str | None = None, level: int | str | None = None, stream=None, log_file: str | None = None
) -> logging.Handler:
    """Send the root logger's records as JSON lines to ``stream`` (stderr by default), and to
    ``log_file`` (default ``NEUROSCAN_LOG_FILE``) when one is named.

    The file rotates by size (``NEUROSCAN_LOG_MAX_MB``, default 50, into ``NEUROSCAN_LOG_BACKUPS``
    backups, default 5, as TorchServe's config/log4j2-files.xml does) because a process that runs for
    weeks must not fill the disk. Idempotent: a second call replaces the handlers it installed before
    instead of adding more, so re-initialised TorchServe workers do not print every line twice.
    ``LOG_LEVEL`` sets the level when ``level`` is not given. Returns the stream handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_neuroscan_json", False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    log_file = log_file or os.environ.get("NEUROSCAN_LOG_FILE")
    for installed in (handler, *([_rotating_file(log_file)] if log_file else [])):
        installed.setFormatter(JsonFormatter(component))
        installed._neuroscan_json = True  # type: ignore[attr-defined]
        root.addHandler(installed)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO").upper())
    return handler


def _rotating_file(path: str) -> logging.Handler:
    """A size-rotated log file, its directory created if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    max_bytes = int(float(os.environ.get("NEUROSCAN_LOG_MAX_MB", "50")) * 1024 * 1024)
    backups = int(os.environ.get("NEUROSCAN_LOG_BACKUPS", "5"))
    return RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")


# --------------------------------------------------------------------------- scrubbing
def _norm(key: object) -> str:
    return str(key).replace("_", "").replace("-", "").replace(" ", "").lower()


def _scrub(key: object, value: Any, depth: int = 0) -> Any:
    """``value`` with bytes, patient fields and long (base64-like) strings removed."""
    if _norm(key) in PATIENT_KEYS:
        return REDACTED
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"[{len(value)} bytes removed]"
    if isinstance(value, str):
        return value if len(value) <= _MAX_STRING else f"[{len(value)} chars removed]"
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _scrub(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(key, v, depth + 1) for v in value]
    return value


def scrub_event(event: dict, hint: dict | None = None) -> dict:
    """Remove anything that could hold an image or patient data from a Sentry event.

    Drops the request body, cookies, query string and credentials headers, every frame's
    local variables, attachments referenced by the hint, and scrubs ``extra``, ``contexts``,
    ``breadcrumbs`` and ``tags`` with :func:`_scrub`. Called as ``before_send``; mutates and
    returns ``event``.
    """
    request = event.get("request")
    if isinstance(request, dict):
        for part in _REQUEST_DROP:
            request.pop(part, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {
                k: v for k, v in headers.items() if k.lower() not in _HEADER_DROP
            }
    for exc in (event.get("exception") or {}).get("values") or []:
        for frame in (exc.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    for thread in (event.get("threads") or {}).get("values") or []:
        for frame in (thread.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    for section in ("extra", "contexts"):
        if isinstance(event.get(section), dict):
            event[section] = _scrub(section, event[section])
    crumbs = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for crumb in values or []:
        if isinstance(crumb, dict) and isinstance(crumb.get("data"), dict):
            crumb["data"] = {k: _scrub(k, v) for k, v in crumb["data"].items()}
    if isinstance(event.get("tags"), dict):
        event["tags"] = {k: v for k, v in _scrub("tags", event["tags"]).items() if v != REDACTED}
    if hint and isinstance(hint.get("attachments"), list):
        hint["attachments"].clear()
    event.pop("user", None)  # never identify the clinician or the patient
    return event


# --------------------------------------------------------------------------- Sentry
def init_sentry(
    component: str,
    release: str | None,
    *,
    dsn: str | None = None,
    environment: str | None = None,
    traces_sample_rate: float | None = None,
) -> bool:
    """Start the Sentry SDK for ``component`` if a DSN is configured; return whether it did.

    ``release`` is the model version (``read_meta(weights).version``), so an error is tied to
    the model that produced it. ``SENTRY_ENVIRONMENT`` and ``SENTRY_TRACES_SAMPLE_RATE`` tune
    it without code changes; tracing is off unless a rate is given.
    """
    dsn = dsn if dsn is not None else os.environ.get(DSN_ENV, "").strip()
    if not dsn:
        return False
    import sentry_sdk  # lazy: components without a DSN never pay for the import

    if traces_sample_rate is None:
        traces_sample_rate = float(os.environ.get("SENTRY_TRACES_SAMPLE_RATE", "0") or 0)
    base_tags = {"component": component}
    if release:
        base_tags["model_version"] = release

    def before_send(event: dict, hint: dict) -> dict:
        tags = event.setdefault("tags", {})
        if isinstance(tags, dict):
            for key, value in base_tags.items():
                tags.setdefault(key, value)
            rid = get_request_id()
            if rid:
                tags.setdefault("request_id", rid)
        return scrub_event(event, hint)

    def before_breadcrumb(crumb: dict, hint: dict) -> dict:
        if isinstance(crumb.get("data"), dict):
            crumb["data"] = {k: _scrub(k, v) for k, v in crumb["data"].items()}
        return crumb

    sentry_sdk.init(
        dsn=dsn,
        release=release,
        environment=environment or os.environ.get("SENTRY_ENVIRONMENT", "production"),
        send_default_pii=False,
        include_local_variables=False,  # frame locals would hold image tensors and bytes
        max_request_body_size="never",
        before_send=before_send,
        before_send_transaction=before_send,
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=traces_sample_rate,
        server_name=component,  # the host name would identify the hospital's machine
    )
    scope = sentry_sdk.get_global_scope()
    for key, value in base_tags.items():
        scope.set_tag(key, value)
    return True


def capture_exception(exc: BaseException | None = None, request_ids: Sequence[str] = ()) -> None:
    """Report ``exc`` (default: the one being handled) to Sentry if :func:`init_sentry` ran.

    Why not rely on the SDK's hooks: TorchServe catches handler exceptions and logs them at
    WARNING, which Sentry keeps only as a breadcrumb, so the handler reports them itself. A
    no-op (no import) when Sentry is off. ``request_ids``: the requests a batch-wide failure
    cost, since no single request context covers a batch; they go into the extra
    ``request_ids``, and a batch of one also gets the ``request_id`` tag.
    """
    if "sentry_sdk" not in sys.modules:
        return
    import sentry_sdk

    if not sentry_sdk.is_initialized():
        return
    ids = [rid for rid in map(clean_request_id, request_ids) if rid]
    with sentry_sdk.new_scope() as scope:
        if ids:
            scope.set_extra("request_ids", ids)
        if len(ids) == 1:
            scope.set_tag("request_id", ids[0])
        sentry_sdk.capture_exception(exc)
