"""Studies worklist: the PACS's studies with the worker's verdicts, suspected tumours first."""

from datetime import date, timedelta

from nicegui import run, ui

from dashboard.pacs import PacsFailure
from dashboard.pages.layout import frame
from dashboard.pages.study_widgets import verdict_badge
from dashboard.services import services
from dashboard.session import current_session
from dashboard.worklist import (
    STATUS_NAMES,
    WorklistFilter,
    WorklistRow,
    matches,
    status_name,
    worklist,
)

_ALL = "all"
_STATUS_CHOICES = {_ALL: "All studies", "suspected": "Suspected tumour", **STATUS_NAMES}


@ui.page("/studies")
async def studies_page() -> None:
    """Filters on top; the studies below in triage order, each a link to its study page."""
    days = services().settings.worklist_days
    with frame("Studies", current_session()):
        with ui.row().classes("w-full items-end flex-wrap gap-3").props('role="search"'):
            status = ui.select(_STATUS_CHOICES, value=_ALL, label="Status").classes("w-52").mark("worklist-status")
            since = ui.input("Study date from", value=(date.today() - timedelta(days=days)).isoformat() if days else "") \
                .props("type=date stack-label").classes("w-44").mark("worklist-since")
            until = ui.input("to").props("type=date stack-label").classes("w-44").mark("worklist-until")
            ui.button("Search", icon="search", on_click=lambda: rows.refresh()).mark("worklist-search")

        @ui.refreshable
        async def rows() -> None:
            try:
                wanted = WorklistFilter(status=None if status.value == _ALL else status.value,
                                        since=_day(since.value), until=_day(until.value))
            except ValueError:
                ui.label("Dates must look like 2025-01-31.").classes("text-red-800").props('role="alert"')
                return
            shared = services()
            show_names = shared.settings.show_patient_name
            try:
                studies = await shared.pacs.search_studies(show_names, wanted.since, wanted.until)
            except PacsFailure as exc:
                ui.label(exc.message).classes("text-red-800").props('role="alert"').mark("worklist-error")
                return
            results = await run.io_bound(shared.study_results.studies)
            shown = [row for row in worklist(studies, results, show_names) if matches(row, wanted)]
            ui.label(f"{len(shown)} stud{'y' if len(shown) == 1 else 'ies'}").props('role="status"') \
                .mark("worklist-count")
            with ui.column().classes("w-full gap-2"):
                for row in shown:
                    _study_row(row)

        await rows()


def _study_row(row: WorklistRow) -> None:
    """One study; its counts are the PACS's, so an analysed study's include the SR and PDF series written back."""
    with ui.row().classes("w-full items-center flex-wrap gap-4 p-2 border rounded").mark("study-row"):
        verdict_badge(row.verdict if row.status == "done" else None, status_name(row.status))
        with ui.column().classes("gap-0 min-w-[240px] flex-1"):
            title = row.description or "(no description)"
            if row.patient_name is not None:
                title = f"{row.patient_name} - {title}"
            ui.label(title).classes("font-semibold")
            ui.label(f"{row.study_date or 'no date'} | accession {row.accession or '-'} | {row.modalities or '-'} | "
                     f"{_count(row.series, 'series', 'series')}, {_count(row.instances, 'instance', 'instances')}") \
                .classes("text-sm text-slate-600").mark("study-details")
        ui.space()
        ui.link("Open study", f"/studies/{row.study_uid}").props(f'aria-label="Open study {row.accession}"')


def _count(value: int | None, one: str, many: str) -> str:
    return f"? {many}" if value is None else f"{value} {one if value == 1 else many}"


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None
