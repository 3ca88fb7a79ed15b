"""Case history: search and filter stored analyses, then reopen one."""

from datetime import date

from nicegui import run, ui

from dashboard.findings import DISPLAY_NAMES, headline, is_reliable
from dashboard.images import data_url
from dashboard.pages.layout import frame
from dashboard.services import services
from dashboard.session import current_session
from dashboard.store import Case, CaseQuery

_ALL = "all"


@ui.page("/history")
async def history_page() -> None:
    """Filters on top; matching cases below, newest first, each a link to reopen it."""
    with frame("Case history", current_session()):
        with ui.row().classes("w-full items-end flex-wrap gap-3").props('role="search"'):
            text = ui.input("Search", placeholder="user, case number, SHA-256 or model version") \
                .classes("min-w-[240px] flex-1").mark("search-text")
            label = ui.select({_ALL: "All classes", **DISPLAY_NAMES}, value=_ALL, label="Class") \
                .classes("w-44").mark("search-class")
            since = ui.input("From").props("type=date stack-label").classes("w-40").mark("search-since")
            until = ui.input("To").props("type=date stack-label").classes("w-40").mark("search-until")
            ui.button("Search", icon="search", on_click=lambda: results.refresh()).mark("search-button")
            text.on("keydown.enter", lambda: results.refresh())

        @ui.refreshable
        async def results() -> None:
            try:
                query = CaseQuery(text=text.value or "", label=None if label.value == _ALL else label.value,
                                  since=_day(since.value), until=_day(until.value))
            except ValueError:
                ui.label("Dates must look like 2025-01-31.").classes("text-red-800").props('role="alert"')
                return
            cases = await run.io_bound(services().cases.search, query)
            ui.label(f"{len(cases)} case(s)").props('role="status"').mark("result-count")
            with ui.column().classes("w-full gap-2"):
                for case in cases:
                    _case_row(case)

        await results()


def _summary(case: Case) -> str:
    """Class and confidence, or why there is no reliable result (never an out-of-domain class in bold)."""
    if is_reliable(case.result):
        return f"{DISPLAY_NAMES[case.label]} ({case.confidence:.0%})"
    return headline(case.result).title


def _case_row(case: Case) -> None:
    with ui.row().classes("w-full items-center flex-wrap gap-4 p-2 border rounded").mark("history-row"):
        ui.image(data_url(case.thumbnail)).classes("w-16 h-16").props(f'alt="Thumbnail of case {case.id}"')
        with ui.column().classes("gap-0 min-w-[200px] flex-1"):
            ui.label(_summary(case)).classes("font-semibold")
            ui.label(f"{case.created_at:%Y-%m-%d %H:%M} UTC by {case.username}, model {case.model_version}") \
                .classes("text-sm text-slate-600")
            ui.label(f"SHA-256 {case.image_sha256[:16]}...").classes("text-xs text-slate-500 break-all")
        if case.feedback_agrees is not None:
            ui.label("Agreed" if case.feedback_agrees else f"Corrected: {DISPLAY_NAMES[case.corrected_label]}") \
                .classes("text-sm")
        ui.link(f"Open case {case.id}", f"/case/{case.id}")


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None
