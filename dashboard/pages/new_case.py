"""New case: drop one or several images, see each one's preview and then its analysis.

Each file is analysed in its own task (TorchServe batches the concurrent requests), with a
spinner on its card and a progress bar for the batch, so the page stays usable throughout.
"""

import asyncio
import base64
import logging
import time

from nicegui import run, ui
from nicegui.elements.upload_files import FileUpload
from nicegui.events import MultiUploadEventArguments

from dashboard.client import ServerError
from dashboard.images import PreparedImage, data_url, prepare
from dashboard.pacs import PacsFailure
from dashboard.pages.layout import frame
from dashboard.pages.widgets import dicom_tags, report_button, result_view
from dashboard.services import services
from dashboard.session import Session, current_session
from neuroscan.imaging import ImageDecodeError, sniff_format
from neuroscan.telemetry import request_context

log = logging.getLogger(__name__)


@ui.page("/")
def new_case_page() -> None:
    """Upload area on top, one result card per uploaded file below."""
    session = current_session()
    settings = services().settings
    with frame("New case", session):
        upload = ui.upload(
            label="Drop brain MRI images here (JPEG, PNG or DICOM), or press + to choose files",
            multiple=True, auto_upload=True, max_file_size=settings.max_upload_mb * 1024 * 1024,
            on_multi_upload=lambda e: _analyse_batch(e, session, upload, progress, results, to_pacs.value),
            on_rejected=lambda: ui.notify(f"A file was refused: files must be under {settings.max_upload_mb} MB.",
                                          type="warning"),
        ).classes("w-full").mark("upload")
        to_pacs = ui.checkbox("Also store the DICOM files in the PACS, where they are analysed as a study") \
            .mark("store-in-pacs")
        progress = ui.linear_progress(value=0, show_value=False).props('aria-label="Batch progress"')
        progress.visible = False
        results = ui.column().classes("w-full gap-4").mark("results")


async def _analyse_batch(event: MultiUploadEventArguments, session: Session, upload: ui.upload,
                         progress: ui.linear_progress, results: ui.column, to_pacs: bool) -> None:
    """Analyse all files of one drop concurrently, newest batch on top; store its DICOM files in the PACS if asked."""
    upload.reset()
    progress.value, progress.visible = 0, True
    done = 0

    async def one(index: int, file: FileUpload, card: ui.card) -> None:
        nonlocal done
        with request_context():  # one id per image, sent to TorchServe and put on every log line
            await _analyse_file(file, index, card, session)
        done += 1
        progress.value = done / len(event.files)

    cards = []
    for file in event.files:
        with results:
            card = ui.card().classes("w-full").mark("case-card")
            card.move(results, target_index=len(cards))
        cards.append(card)
    stored = [_store_in_pacs(event.files)] if to_pacs else []
    await asyncio.gather(*(one(index, file, card) for index, (file, card) in enumerate(zip(event.files, cards), 1)),
                         *stored)
    progress.visible = False


async def _store_in_pacs(files: list[FileUpload]) -> None:
    """STOW-RS the drop's DICOM files (one request); the PACS worker then analyses their series as a study."""
    dicoms = [data for data in [await file.read() for file in files] if sniff_format(data) == "dicom"]
    if not dicoms:
        ui.notify("None of these files is DICOM: nothing was stored in the PACS.", type="info")
        return
    try:
        await services().pacs.store(dicoms)
    except PacsFailure as exc:
        ui.notify(f"The DICOM files were not stored in the PACS. {exc.message}", type="negative", multi_line=True)
        return
    ui.notify(f"{len(dicoms)} DICOM file{'s' if len(dicoms) != 1 else ''} stored in the PACS; the study is on the "
              "Studies page, with its verdict once analysed.", type="positive")


async def _analyse_file(file: FileUpload, index: int, card: ui.card, session: Session) -> None:
    """Preview, ask TorchServe, store and show; every failure ends as a sentence on the card."""
    shared = services()
    data = await file.read()
    title = _title(file.name, data, index)
    with card:
        ui.label(title).classes("text-lg font-semibold break-all")
        status = ui.row().classes("items-center gap-2").props('role="status" aria-live="polite"')
        with status:
            ui.spinner(size="md")
            ui.label("Reading the image...")
    try:
        prepared = await run.io_bound(prepare, data, shared.settings.thumbnail_px)
        _show_preview(card, status, prepared)
        started = time.perf_counter()
        result = await shared.torchserve.explain(data)
        shared.metrics.latency.observe(time.perf_counter() - started)
        heatmap = _heatmap(result)
        result["dicom_tags"] = prepared.dicom_tags  # the locally whitelisted tags, never the server's echo
        case_id = await run.io_bound(shared.cases.add, username=session.username, image_sha256=prepared.sha256,
                                     thumbnail=prepared.thumbnail_png, image=prepared.view_png,
                                     heatmap=heatmap, result=result)
    except ImageDecodeError as exc:
        log.info("upload refused: %s", exc)
        _show_error(card, status, exc.message, exc.code)
        return
    except ServerError as exc:
        log.log(exc.log_level, "analysis of an upload failed: %s", exc)
        _show_error(card, status, exc.message, exc.code)
        return
    except Exception:  # the boundary: whatever broke, the clinician gets a sentence and Sentry the trace
        log.exception("unexpected failure analysing an upload")
        _show_error(card, status, "Something went wrong while analysing this image. The error has been "
                    "recorded; please try again or contact your operator.", "internal")
        return
    shared.metrics.analyses.labels(label=result["label"]).inc()
    card.clear()
    with card:
        with ui.row().classes("w-full items-center flex-wrap gap-2"):
            ui.label(f"{title} - case {case_id}").classes("text-lg font-semibold break-all")
            ui.space()
            ui.link("Open case", f"/case/{case_id}")
            report_button(case_id)
        result_view(result, prepared.view_png, heatmap, shared.settings.low_confidence_threshold)


def _title(name: str, data: bytes, index: int) -> str:
    """The card heading: the file name, except for DICOM, whose file names often carry the patient's name."""
    return f"DICOM image {index}" if sniff_format(data) == "dicom" else name


def _show_preview(card: ui.card, status: ui.row, prepared: PreparedImage) -> None:
    """The decoded image (and DICOM tags) while the server works."""
    status.clear()
    with status:
        ui.spinner(size="md")
        ui.label("Analysing...")
    with card:
        ui.image(data_url(prepared.thumbnail_png)).classes("w-24 h-24") \
            .props('alt="Preview of the uploaded image"').mark("preview")
        dicom_tags(prepared.dicom_tags)


def _show_error(card: ui.card, status: ui.row, message: str, code: str) -> None:
    services().metrics.failures.labels(code=code).inc()
    status.clear()
    with status:
        ui.icon("error", color="negative").props('aria-hidden="true"')
        ui.label(message).classes("text-red-800").props('role="alert"').mark("upload-error")


def _heatmap(result: dict) -> bytes | None:
    """Take the base64 heatmap out of the result (it is stored as PNG bytes, not inside the JSON)."""
    encoded = result.pop("heatmap_png", None)
    return base64.b64decode(encoded) if encoded else None
