"""Entry point: build the shared services, guard the pages, expose /metrics and run NiceGUI.

``make serve`` runs ``python -m dashboard`` next to TorchServe; the tests run this same module
through NiceGUI's user simulation, so production and tests build the app identically.
"""

import os
import secrets
import sys

from fastapi import Response
from nicegui import app, background_tasks, ui
from prometheus_client import CONTENT_TYPE_LATEST

from dashboard.services import Services, init_services
from dashboard.session import AuthMiddleware
from dashboard.settings import Settings, load_settings
from neuroscan.telemetry import configure_json_logging, init_sentry

STORAGE_SECRET_ENV = "NEUROSCAN_STORAGE_SECRET"


def create_app(settings: Settings) -> Services:
    """Register everything on NiceGUI's app; the pages import here so they see ready services."""
    shared = init_services(settings)
    generated = shared.accounts.ensure_admin(settings.admin_user)
    if generated:
        print(f"First run: created admin account '{settings.admin_user}' with password {generated}\n"
              "It is shown only this once. Set NEUROSCAN_ADMIN_PASSWORD before the first run to choose it.",
              file=sys.stderr, flush=True)
    app.add_middleware(AuthMiddleware)
    app.on_startup(lambda: background_tasks.create(shared.torchserve.keys.keep_fresh(settings.key_check_s),
                                                   name="renew TorchServe keys"))
    app.on_shutdown(shared.torchserve.aclose)
    app.on_shutdown(shared.pacs.aclose)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(shared.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    import dashboard.pages  # noqa: F401  (registers the @ui.page functions)

    return shared


def storage_secret(settings: Settings) -> str:
    """The key that signs session cookies: from the environment, else a random one kept in a file."""
    if secret := os.environ.get(STORAGE_SECRET_ENV):
        return secret
    path = settings.storage_secret_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def main() -> None:
    """Start the dashboard with the settings from config/dashboard.toml and NEUROSCAN_* variables."""
    configure_json_logging("dashboard")
    init_sentry("dashboard", None)  # a no-op unless SENTRY_DSN is set
    settings = load_settings()
    create_app(settings)
    ui.run(host=settings.host, port=settings.port, title="NeuroScan", storage_secret=storage_secret(settings),
           reload=False, show=False, favicon="🧠")
