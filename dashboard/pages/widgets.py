"""The result view shared by the new-case page and a reopened case: card, bars, heatmap, tags."""

from typing import Any

from nicegui import run, ui

from dashboard.findings import DISPLAY_NAMES, headline, warnings_for
from dashboard.images import data_url
from dashboard.report import build_report
from dashboard.services import services
from neuroscan.classes import CLASSES

_DEFAULT_OPACITY = 0.6


def result_view(result: dict[str, Any], view_png: bytes, heatmap_png: bytes | None,
                low_confidence_threshold: float) -> None:
    """Everything a clinician reads about one analysed image, laid out to wrap on a tablet."""
    with ui.row().classes("w-full flex-wrap gap-6 items-start"):
        image_with_heatmap(view_png, heatmap_png)
        with ui.column().classes("flex-1 min-w-[260px] gap-3"):
            diagnosis_card(result)
            cautions(result, low_confidence_threshold)
            probability_bars(result["probabilities"])
            dicom_tags(result.get("dicom_tags") or {})


def image_with_heatmap(view_png: bytes, heatmap_png: bytes | None) -> None:
    """The model's view with the Grad-CAM heatmap on top, a switch to hide it and an opacity slider."""
    with ui.column().classes("gap-1"):
        with ui.element("div").classes("relative w-72 h-72 max-w-full"):
            _layer(view_png, "Uploaded image as seen by the model").mark("view")
            if heatmap_png is None:
                return
            heatmap = _layer(heatmap_png, "Grad-CAM heatmap of the regions that drove the result") \
                .style(f"opacity: {_DEFAULT_OPACITY}").mark("heatmap")
        shown = ui.switch("Show heatmap", value=True).mark("heatmap-toggle")
        heatmap.bind_visibility_from(shown, "value")
        with ui.row().classes("items-center w-72 max-w-full no-wrap").bind_visibility_from(shown, "value"):
            ui.label("Opacity").classes("text-sm")
            ui.slider(min=0.0, max=1.0, step=0.05, value=_DEFAULT_OPACITY,
                      on_change=lambda e: heatmap.style(f"opacity: {e.value}")) \
                .props('aria-label="Heatmap opacity" label').mark("heatmap-opacity")


def _layer(png: bytes, alt: str) -> ui.element:
    """A plain stacked <img>: Quasar's q-img draws a light veil when given CSS opacity."""
    layer = ui.element("img").classes("absolute inset-0 w-full h-full")
    layer.props["src"] = data_url(png)
    layer.props["alt"] = alt
    return layer


def diagnosis_card(result: dict[str, Any]) -> None:
    """The predicted class and its calibrated confidence, biggest text on the page (or that there is none)."""
    line = headline(result)
    with ui.card().classes("w-full").props('role="region" aria-label="Diagnosis"').mark("diagnosis"):
        ui.label(line.title).classes("text-2xl font-bold")
        ui.label(line.detail).classes("text-base")
        ui.label(f"Model version {result['model_version']}").classes("text-xs text-slate-600")


def cautions(result: dict[str, Any], threshold: float) -> None:
    """Plain-language warnings, announced to screen readers."""
    for caution in warnings_for(result, threshold):
        with ui.row().classes("w-full items-center no-wrap gap-2 p-2 rounded bg-amber-100 text-amber-900") \
                .props('role="alert"').mark(f"warning-{caution.kind}"):
            ui.icon("warning").props('aria-hidden="true"')
            ui.label(caution.text)


def probability_bars(probabilities: dict[str, float]) -> None:
    """One labelled bar per class, always in the fixed class order."""
    with ui.column().classes("w-full gap-1"):
        for name in CLASSES:
            value = float(probabilities[name])
            with ui.row().classes("w-full items-center no-wrap gap-2"):
                ui.label(DISPLAY_NAMES[name]).classes("w-36 text-sm")
                ui.linear_progress(value=value, show_value=False, size="14px") \
                    .props(f'aria-label="{DISPLAY_NAMES[name]} probability"').classes("flex-1").mark(f"prob-{name}")
                ui.label(f"{value:.1%}").classes("w-14 text-right text-sm")


def dicom_tags(tags: dict[str, str]) -> None:
    """The whitelisted DICOM tags (modality, series, slice...); never patient identity."""
    if not tags:
        return
    rows = [{"tag": tag, "value": value} for tag, value in tags.items()]
    columns = [{"name": "tag", "label": "DICOM tag", "field": "tag", "align": "left"},
               {"name": "value", "label": "Value", "field": "value", "align": "left"}]
    ui.table(rows=rows, columns=columns).props("dense flat").classes("w-full").mark("dicom-tags")


def report_button(case_id: int) -> ui.button:
    """A button that builds the case's one-page PDF (off the event loop) and downloads it."""

    async def download() -> None:
        shared = services()
        case = await run.io_bound(shared.cases.get, case_id)
        pdf = await run.io_bound(build_report, case, shared.settings.low_confidence_threshold)
        shared.metrics.reports.inc()
        ui.download.content(pdf, f"neuroscan-case-{case_id}.pdf", "application/pdf")

    return ui.button("Download PDF report", icon="picture_as_pdf", on_click=download).props("outline") \
        .mark(f"report-{case_id}")
