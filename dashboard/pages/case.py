"""A reopened case: the stored result, the report, and the clinician's verdict."""

from nicegui import run, ui

from dashboard.findings import DISPLAY_NAMES
from dashboard.pages.layout import frame
from dashboard.pages.widgets import report_button, result_view
from dashboard.services import services
from dashboard.session import Session, current_session
from dashboard.store import Case


@ui.page("/case/{case_id}")
async def case_page(case_id: int) -> None:
    """Show case ``case_id`` as it was analysed, with its report and a feedback form."""
    session = current_session()
    shared = services()
    case = await run.io_bound(shared.cases.get, case_id)
    if case is not None:
        await run.io_bound(shared.audit.record, session.username, "open_case", f"case {case_id}", ui.context.client.ip)
    with frame(f"Case {case_id}", session):
        if case is None:
            ui.label(f"There is no case {case_id}.").props('role="alert"')
            ui.link("Back to the history", "/history")
            return
        with ui.row().classes("w-full items-center flex-wrap gap-2"):
            ui.label(f"Analysed {case.created_at:%Y-%m-%d %H:%M} UTC by {case.username}; "
                     f"image SHA-256 {case.image_sha256}").classes("text-sm text-slate-600 break-all")
            ui.space()
            report_button(case.id)
        result_view(case.result, case.image, case.heatmap, shared.settings.low_confidence_threshold)
        _feedback_form(case, session)


def _feedback_form(case: Case, session: Session) -> None:
    """Agree, or give the correct class; corrections are kept as labels for future training."""
    with ui.card().classes("w-full max-w-xl").props('role="region" aria-label="Clinician review"'):
        ui.label("Your review").classes("text-lg font-semibold")
        verdict = ui.label(_verdict_text(case)).props('role="status"').mark("verdict")
        corrected = ui.select(DISPLAY_NAMES, label="Correct class", value=case.corrected_label) \
            .classes("w-56").mark("corrected-label")

        async def save(agrees: bool) -> None:
            if not agrees and corrected.value is None:
                ui.notify("Choose the correct class first.", type="warning")
                return
            shared = services()
            await run.io_bound(shared.cases.record_feedback, case.id, username=session.username,
                               agrees=agrees, corrected_label=corrected.value)
            await run.io_bound(shared.audit.record, session.username, "review_case", f"case {case.id}",
                               ui.context.client.ip)
            shared.metrics.feedback.labels(verdict="agree" if agrees else "corrected").inc()
            verdict.text = _verdict_text(await run.io_bound(shared.cases.get, case.id))
            ui.notify("Review saved.", type="positive")

        with ui.row().classes("flex-wrap gap-2"):
            ui.button("I agree", icon="check", on_click=lambda: save(True)).mark("agree")
            ui.button("Save correction", icon="edit", on_click=lambda: save(False)).mark("correct")


def _verdict_text(case: Case) -> str:
    if case.feedback_agrees is None:
        return "Not reviewed yet."
    if case.feedback_agrees:
        return f"Agreed by {case.feedback_by}."
    return f"Corrected to {DISPLAY_NAMES[case.corrected_label]} by {case.feedback_by}."
