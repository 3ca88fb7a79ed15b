"""One study: the verdict, a slice scroller per analysed series with heatmaps and the probability strip, and the review."""

from typing import Any

from nicegui import run, ui

from dashboard.findings import DISPLAY_NAMES
from dashboard.pacs import PacsFailure
from dashboard.pages.layout import frame
from dashboard.pages.slice_viewer import SliceViewer
from dashboard.pages.study_widgets import verdict_colour, verdict_text
from dashboard.services import services
from dashboard.session import Session, current_session
from dashboard.worklist import status_name
from neuroscan.study import INCONCLUSIVE
from neuroscan.study_results import SeriesResult, StudyResult


@ui.page("/studies/{study_uid}")
async def study_page(study_uid: str) -> None:
    """Everything the worker found in study ``study_uid``; opening it is written to the audit log."""
    session = current_session()
    shared = services()
    result = await run.io_bound(shared.study_results.study, study_uid)
    await run.io_bound(shared.audit.record, session.username, "open_study", f"study {study_uid}",
                       ui.context.client.ip)
    with frame("Study", session):
        ui.label(f"Study {study_uid}").classes("text-sm text-slate-600 break-all").mark("study-uid")
        if result is None:
            ui.label("This study has not been analysed yet: the PACS worker analyses each MR series once the "
                     "study is complete.").props('role="status"').mark("study-not-analysed")
            ui.link("Back to the studies", "/studies")
            return
        await _study_details(result.orthanc_id)
        _verdict_card(result)
        analysed = [series for series in result.series if series.status == "done" and series.slices]
        if analysed:
            await _series_viewer(analysed, result.verdict)
        if result.status == "done":
            _review_form(result, session, await run.io_bound(shared.study_results.feedback, study_uid))


async def _study_details(orthanc_id: str) -> None:
    """Date, description and accession from the PACS, so the clinician knows which study this is."""
    try:
        details = await services().pacs.study_details(orthanc_id)
    except PacsFailure as exc:
        ui.label(exc.message).classes("text-sm text-red-800").props('role="alert"').mark("study-details-error")
        return
    day = details.get("StudyDate", "")
    parts = [f"{day[:4]}-{day[4:6]}-{day[6:]}" if len(day) == 8 else day, details.get("StudyDescription", ""),
             f"accession {details['AccessionNumber']}" if "AccessionNumber" in details else ""]
    ui.label(" | ".join(part for part in parts if part)).classes("text-base").mark("study-header")


def _verdict_card(result: StudyResult) -> None:
    """The study verdict, what it rests on and what the worker left out, biggest text on the page."""
    with ui.card().classes("w-full").props('role="region" aria-label="Study verdict"').mark("study-verdict"):
        ui.label(verdict_text(result.verdict) if result.status == "done" else status_name(result.status)) \
            .classes(f"text-2xl font-bold text-{verdict_colour(result.verdict if result.status == 'done' else None)}") \
            .mark("study-verdict-text")
        ui.label(f"Model version {result.model_version}, analysed {result.updated_at[:16].replace('T', ' ')} UTC") \
            .classes("text-xs text-slate-600")
        for series in result.series:
            ui.label(_series_line(series)).classes("text-sm").mark("series-summary")
        for note in result.notes:
            ui.label(note).classes("text-sm text-amber-900").mark("study-note")


def _series_name(series: SeriesResult) -> str:
    """``Series 3 (AX T1 POST)`` as the scanner numbered and described it; the UID only without a number."""
    number, description = series.summary.get("number"), series.summary.get("description")
    name = f"Series {number}" if number is not None else f"Series {series.series_uid}"
    return f"{name} ({description})" if description else name


def _series_line(series: SeriesResult) -> str:
    summary: dict[str, Any] = series.summary
    if series.status != "done":
        return f"{_series_name(series)}: {status_name(series.status)}."
    return (f"{_series_name(series)}: {verdict_text(series.verdict)}; {summary.get('slices', len(series.slices))} "
            f"slices, {summary.get('counted', '?')} counted, {summary.get('left_out', 0)} outside the validated "
            f"domain, {summary.get('failed', 0)} unreadable.")


async def _series_viewer(analysed: list[SeriesResult], study_verdict: str | None) -> None:
    """One scroller; with several series a choice of series, starting on the one the verdict came from."""
    first = next((s for s in analysed if s.verdict == study_verdict), analysed[0])
    with ui.card().classes("w-full").props('role="region" aria-label="Slices"'):
        if len(analysed) > 1:
            choices = {s.series_uid: f"{_series_name(s)} - {verdict_text(s.verdict)}" for s in analysed}
            ui.select(choices, value=first.series_uid, label="Series",
                      on_change=lambda e: viewer.refresh(next(s for s in analysed if s.series_uid == e.value))) \
                .classes("w-full").mark("series-select")

        @ui.refreshable
        async def viewer(series: SeriesResult) -> None:
            scroller = SliceViewer(series)
            await scroller.show(scroller.index)

        await viewer(first)


def _review_form(result: StudyResult, session: Session, feedback: list[dict[str, Any]]) -> None:
    """Agree with the study verdict or give the right study-level class; kept as a label for future training."""
    with ui.card().classes("w-full max-w-xl").props('role="region" aria-label="Clinician review"'):
        ui.label("Your review of the study").classes("text-lg font-semibold")
        status = ui.label(_review_text(feedback)).props('role="status"').mark("study-review")
        corrected = ui.select(DISPLAY_NAMES, label="Correct study class").classes("w-56").mark("study-corrected")

        async def save(agrees: bool) -> None:
            if not agrees and corrected.value is None:
                ui.notify("Choose the correct class first.", type="warning")
                return
            shared = services()
            await run.io_bound(shared.study_results.record_feedback, result.study_uid, session.username, agrees,
                               None if agrees else corrected.value)
            await run.io_bound(shared.audit.record, session.username, "review_study", f"study {result.study_uid}",
                               ui.context.client.ip)
            shared.metrics.feedback.labels(verdict="agree" if agrees else "corrected").inc()
            status.text = _review_text(await run.io_bound(shared.study_results.feedback, result.study_uid))
            ui.notify("Review saved.", type="positive")

        with ui.row().classes("flex-wrap gap-2"):
            if result.verdict != INCONCLUSIVE:  # nothing to agree with: only a class can be given
                ui.button("I agree", icon="check", on_click=lambda: save(True)).mark("study-agree")
            ui.button("Save correction", icon="edit", on_click=lambda: save(False)).mark("study-correct")


def _review_text(feedback: list[dict[str, Any]]) -> str:
    if not feedback:
        return "Not reviewed yet."
    last = feedback[-1]
    when = str(last["created_at"])[:16].replace("T", " ")
    if last["agrees"]:
        return f"Agreed by {last['username']} ({when} UTC)."
    return f"Corrected to {DISPLAY_NAMES[last['corrected_label']]} by {last['username']} ({when} UTC)."
