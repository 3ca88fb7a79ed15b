"""Operator page (admin role): model versions and workers, scaling, default version, TorchServe's keys, live
metrics."""

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from dashboard.client import ServerError
from dashboard.findings import DISPLAY_NAMES
from dashboard.metrics import ServeHistory, parse_torchserve
from dashboard.pages.layout import frame
from dashboard.services import services
from dashboard.session import current_session
from neuroscan.classes import CLASSES

log = logging.getLogger(__name__)


@ui.page("/operator")
async def operator_page() -> None:
    """Refuses non-admins; otherwise shows the model panel, the charts and the dashboard counters."""
    session = current_session()
    with frame("Operator", session):
        if session is None or not session.is_admin:
            ui.label("This page is for operators: your account does not have the admin role.") \
                .props('role="alert"').mark("forbidden")
            return
        await _models_panel()
        _keys_panel()
        _charts_panel()
        _counters_panel()


async def _models_panel() -> None:
    """Versions with their workers; per-version scaling and the default-version switch."""
    client = services().torchserve

    async def act(action: Callable[[], Awaitable[None]], done: str) -> None:
        """Run one management call at a time (a second click waits its turn out), then show the new state."""
        if busy.visible:
            ui.notify("Another change is still in progress.", type="warning")
            return
        busy.visible = True
        try:
            await action()
            ui.notify(done, type="positive")
        except ServerError as exc:
            log.log(exc.log_level, "management call failed: %s", exc)
            ui.notify(exc.message, type="negative", multi_line=True)
        finally:
            busy.visible = False
        models.refresh()

    @ui.refreshable
    async def models() -> None:
        try:
            versions, default = await client.describe(), await client.default_version()
        except ServerError as exc:
            log.log(exc.log_level, "cannot describe the model: %s", exc)
            ui.label(exc.message).classes("text-red-800").props('role="alert"').mark("models-error")
            return
        for entry in versions:
            _version_row(entry, default, act)
        choices = [entry["modelVersion"] for entry in versions]
        with ui.row().classes("items-end gap-2"):
            chosen = ui.select(choices, value=default, label="Default version").classes("w-48").mark("default-select")
            ui.button("Set default", on_click=lambda: act(lambda: client.set_default(chosen.value),
                                                         f"Version {chosen.value} is now the default.")) \
                .mark("set-default")

    with ui.card().classes("w-full"):
        with ui.row().classes("w-full items-center"):
            ui.label(f"Model '{services().settings.model_name}'").classes("text-lg font-semibold")
            ui.space()
            busy = ui.spinner(size="sm").props('aria-label="Working"')
            busy.visible = False
            ui.button("Refresh", icon="refresh", on_click=lambda: models.refresh()).props("flat")
        await models()


def _version_row(entry: dict[str, Any], default: str, act: Callable[..., Awaitable[None]]) -> None:
    version = str(entry["modelVersion"])
    workers = entry.get("workers", [])
    client = services().torchserve
    with ui.row().classes("w-full items-center flex-wrap gap-3 p-2 border rounded").mark(f"version-{version}"):
        ui.label(f"Version {version}" + (" (default)" if version == default else "")).classes("font-semibold")
        ui.label(f"{len(workers)} worker(s), min {entry.get('minWorkers')} / max {entry.get('maxWorkers')}") \
            .mark(f"workers-{version}")
        for worker in workers:
            ui.badge(f"{worker.get('id')}: {worker.get('status')}",
                     color="positive" if worker.get("status") == "READY" else "warning")
        ui.space()
        count = len(workers)
        ui.button(icon="remove", on_click=lambda: act(lambda: client.scale(version, count - 1),
                                                      f"Version {version} scaled to {count - 1} worker(s).")) \
            .props(f'flat aria-label="One worker fewer for version {version}"') \
            .mark(f"scale-down-{version}").set_enabled(count > 1)
        ui.button(icon="add", on_click=lambda: act(lambda: client.scale(version, count + 1),
                                                   f"Version {version} scaled to {count + 1} worker(s).")) \
            .props(f'flat aria-label="One worker more for version {version}"').mark(f"scale-up-{version}")


def _keys_panel() -> None:
    """When TorchServe's keys expire; the dashboard renews them itself, the button does it at once."""
    client = services().torchserve
    settings = services().settings

    @ui.refreshable
    def expiry() -> None:
        expires = client.key_expiry()
        for api in ("inference", "management"):
            ui.label(f"{api.capitalize()} key: {_expiry_words(expires.get(api))}").mark(f"key-expiry-{api}")

    async def renew() -> None:
        renewed = await client.renew_keys()
        ui.notify("Both keys renewed." if renewed else "TorchServe did not renew the keys: see the dashboard log.",
                  type="positive" if renewed else "negative")
        expiry.refresh()

    with ui.card().classes("w-full"):
        with ui.row().classes("w-full items-center"):
            ui.label("TorchServe keys").classes("text-lg font-semibold")
            ui.space()
            ui.button("Renew now", icon="key", on_click=renew).props("flat").mark("renew-keys")
        expiry()
        ui.label(f"Renewed automatically when less than {settings.key_renew_margin_s / 60:.0f} min are left "
                 f"(key file {settings.key_file}).").classes("text-sm")
        ui.timer(settings.status_refresh_s, expiry.refresh)


def _expiry_words(at: datetime | None) -> str:
    """``expires 2026-12-02 09:37 UTC (in 23 h 59 min)``, or why there is no date."""
    if at is None:
        return "no expiry known (key file missing or token authorization off)"
    left = int((at - datetime.now(UTC)).total_seconds())
    when = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if left <= 0:
        return f"expired at {when}"
    return f"expires {when} (in {left // 3600} h {left % 3600 // 60} min)"


def _charts_panel() -> None:
    """Request rate and mean latency over time, and predictions per class, from TorchServe's metrics."""
    settings = services().settings
    history = ServeHistory(settings.metrics_history_points)
    with ui.card().classes("w-full"):
        ui.label("Live TorchServe metrics").classes("text-lg font-semibold")
        status = ui.label("Waiting for the first two scrapes...").classes("text-sm").mark("metrics-status")
        with ui.row().classes("w-full flex-wrap gap-4"):
            traffic = ui.echart(_traffic_options()).classes("flex-1 min-w-[300px] h-64").mark("chart-traffic")
            classes = ui.echart(_classes_options()).classes("flex-1 min-w-[300px] h-64").mark("chart-classes")

    async def scrape() -> None:
        try:
            text = await services().torchserve.metrics_text()
        except ServerError as exc:
            status.text = exc.message
            return
        sample = parse_torchserve(text, settings.model_name, at=time.monotonic())
        history.add(sample, datetime.now().strftime("%H:%M:%S"))
        status.text = f"{sample.requests:.0f} requests served in total"
        traffic.options["xAxis"]["data"] = list(history.times)
        traffic.options["series"][0]["data"] = list(history.rates)
        traffic.options["series"][1]["data"] = list(history.latencies_ms)
        classes.options["series"][0]["data"] = [sample.per_class[name] for name in CLASSES]
        traffic.update()
        classes.update()

    ui.timer(settings.metrics_refresh_s, scrape, immediate=True)


def _traffic_options() -> dict[str, Any]:
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["Requests/s", "Mean latency (ms)"]},
        "xAxis": {"type": "category", "data": []},
        "yAxis": [{"type": "value", "name": "req/s"}, {"type": "value", "name": "ms"}],
        "series": [{"name": "Requests/s", "type": "line", "data": []},
                   {"name": "Mean latency (ms)", "type": "line", "yAxisIndex": 1, "data": []}],
    }


def _classes_options() -> dict[str, Any]:
    return {
        "tooltip": {},
        "title": {"text": "Predictions per class", "textStyle": {"fontSize": 13}},
        "xAxis": {"type": "category", "data": [DISPLAY_NAMES[name] for name in CLASSES]},
        "yAxis": {"type": "value"},
        "series": [{"type": "bar", "data": [0] * len(CLASSES)}],
    }


def _counters_panel() -> None:
    """The dashboard's own Prometheus counters (also served at /metrics)."""
    metrics = services().metrics
    with ui.card().classes("w-full"):
        ui.label("Dashboard counters (exported at /metrics)").classes("text-lg font-semibold")

        @ui.refreshable
        def table() -> None:
            rows = [{"metric": name, "value": value} for name, value in metrics.totals().items()]
            ui.table(rows=rows, columns=[{"name": "metric", "label": "Metric", "field": "metric", "align": "left"},
                                         {"name": "value", "label": "Value", "field": "value"}]) \
                .props("dense flat").classes("w-full").mark("dashboard-counters")

        table()
        ui.timer(services().settings.metrics_refresh_s, table.refresh)
