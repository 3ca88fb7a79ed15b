"""The frame every page shares: header with navigation and server status, and the disclaimer footer.

The server status is refreshed on a timer rather than on page load, so a slow or stopped
TorchServe never delays a page; the same timer ends an expired session.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import ui

from dashboard.client import ServerError
from dashboard.findings import DISCLAIMER
from dashboard.services import services
from dashboard.session import LOGIN_PATH, Session, current_session, end_session

_NAV = (("New case", "/", False), ("Studies", "/studies", False), ("History", "/history", False),
        ("Operator", "/operator", True),
        ("Audit", "/audit", True))


@contextmanager
def frame(title: str, session: Session | None) -> Iterator[ui.column]:
    """Lay out header, a centred content column (yielded) and the footer."""
    ui.page_title(f"{title} - NeuroScan")
    with ui.header().classes("items-center flex-wrap gap-x-4 gap-y-1 px-4 py-2 bg-slate-800"):
        ui.link("NeuroScan", "/").classes("text-lg font-bold text-white no-underline")
        if session is not None:
            with ui.element("nav").props('aria-label="Main"').classes("flex flex-wrap gap-3"):
                for label, path, admin_only in _NAV:
                    if session.is_admin or not admin_only:
                        ui.link(label, path).classes("text-white")
        ui.space()
        _status_chip()
        if session is not None:
            _account_menu(session)
    with ui.column().classes("w-full max-w-screen-xl mx-auto p-4 gap-4") as content:
        ui.label(title).classes("text-2xl font-semibold").props('role="heading" aria-level="1"')
        yield content
    with ui.footer().classes("bg-amber-50 text-slate-800 px-4 py-2"):
        ui.label(DISCLAIMER).classes("text-xs").props('role="note"').mark("disclaimer")
    if session is not None:
        ui.timer(60, _end_if_expired)


def _status_chip() -> None:
    """Server health and default model version, refreshed in the background."""
    chip = ui.label("Server: checking...").classes("text-sm text-white").props('role="status" aria-live="polite"')
    chip.mark("server-status")

    async def refresh() -> None:
        client = services().torchserve
        try:
            health = await client.ping()
            version = await client.default_version()
        except ServerError:
            chip.text = "Server: unavailable"
            chip.classes(replace="text-sm text-red-200")
            return
        chip.text = f"Server: {health} | model {version}"
        chip.classes(replace="text-sm text-white")

    ui.timer(services().settings.status_refresh_s, refresh, immediate=True)


def _account_menu(session: Session) -> None:
    ui.label(f"{session.username} ({session.role})").classes("text-sm text-white")
    ui.button("Sign out", on_click=_sign_out).props("flat dense color=white")


def _sign_out() -> None:
    end_session()
    ui.navigate.to(LOGIN_PATH)


def _end_if_expired() -> None:
    if current_session() is None:
        ui.navigate.to(LOGIN_PATH)
