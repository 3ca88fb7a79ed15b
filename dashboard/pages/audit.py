"""Audit page (admin role): who signed in, and who opened or reviewed which case or study, newest first."""

from nicegui import run, ui

from dashboard.audit import ACTIONS
from dashboard.pages.layout import frame
from dashboard.services import services
from dashboard.session import current_session

_ALL = "all"
_COLUMNS = [
    {"name": "at", "label": "Time (UTC)", "field": "at", "align": "left"},
    {"name": "username", "label": "User", "field": "username", "align": "left"},
    {"name": "action", "label": "Action", "field": "action", "align": "left"},
    {"name": "target", "label": "Case or study", "field": "target", "align": "left"},
    {"name": "client", "label": "Client address", "field": "client", "align": "left"},
]


@ui.page("/audit")
async def audit_page() -> None:
    """Refuses non-admins; otherwise filters on top and the matching entries in a table."""
    session = current_session()
    with frame("Audit log", session):
        if session is None or not session.is_admin:
            ui.label("This page is for administrators: your account does not have the admin role.") \
                .props('role="alert"').mark("forbidden")
            return
        with ui.row().classes("w-full items-end flex-wrap gap-3").props('role="search"'):
            username = ui.input("User").classes("w-44").mark("audit-user")
            action = ui.select({_ALL: "All actions", **ACTIONS}, value=_ALL, label="Action") \
                .classes("w-48").mark("audit-action")
            target = ui.input("Case or study", placeholder="case 12, or part of a study UID") \
                .classes("min-w-[240px] flex-1").mark("audit-target")
            ui.button("Search", icon="search", on_click=lambda: entries.refresh()).mark("audit-search")

        @ui.refreshable
        async def entries() -> None:
            found = await run.io_bound(services().audit.recent, username=username.value or "",
                                       action=None if action.value == _ALL else action.value,
                                       target=target.value or "")
            ui.label(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}").props('role="status"')
            rows = [{"id": e.id, "at": f"{e.at:%Y-%m-%d %H:%M:%S}", "username": e.username,
                     "action": ACTIONS[e.action], "target": e.target, "client": e.client} for e in found]
            ui.table(rows=rows, columns=_COLUMNS, row_key="id").props("dense flat").classes("w-full") \
                .mark("audit-table")

        await entries()
