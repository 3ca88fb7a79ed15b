"""Sign-in page: the only page reachable without a session; throttled per account and per client."""

import logging

from nicegui import run, ui

from dashboard.pages.layout import frame
from dashboard.services import services
from dashboard.session import current_session, start_session

log = logging.getLogger(__name__)


@ui.page("/login")
def login_page(redirect_to: str = "/") -> None:
    """Ask for user name and password; on success go where the visitor was heading."""
    target = _safe_target(redirect_to)
    if current_session() is not None:
        ui.navigate.to(target)
        return

    client_ip = ui.context.client.ip

    async def attempt() -> None:
        shared = services()
        name = (username.value or "").strip()
        throttle = shared.sign_in_throttle
        if refusal := throttle.begin(name, client_ip):
            shared.metrics.sign_ins.labels(outcome="throttled").inc()
            show_error(refusal.message())
            return
        account = None
        try:
            # scrypt is deliberately slow: run it off the event loop so other clinicians' pages stay live
            account = await run.io_bound(shared.accounts.authenticate, name, password.value or "")
        finally:
            refusal = throttle.end(name, client_ip, success=account is not None)
        shared.metrics.sign_ins.labels(outcome="success" if account else "failure").inc()
        if account is None:
            if refusal is not None and refusal.kind == "locked":
                log.warning("sign-in locked after repeated failures (client %s)", client_ip)
                await run.io_bound(shared.audit.record, name, "sign_in_locked", client=client_ip)
            show_error(" ".join(["Wrong user name or password.", *([refusal.message()] if refusal else [])]))
            return
        await run.io_bound(shared.audit.record, account.username, "sign_in", client=client_ip)
        start_session(account, shared.settings.session_hours)
        ui.navigate.to(target)

    def show_error(text: str) -> None:
        password.value = ""
        error.text = text
        error.visible = True

    with frame("Sign in", None), ui.card().classes("w-full max-w-sm self-center"):
        username = ui.input("User name").props("autofocus autocomplete=username").classes("w-full")
        password = ui.input("Password", password=True, password_toggle_button=True) \
            .props("autocomplete=current-password").classes("w-full")
        password.on("keydown.enter", attempt)
        error = ui.label().classes("text-red-700").props('role="alert"')
        error.visible = False
        ui.button("Sign in", on_click=attempt).classes("w-full").mark("sign-in")


def _safe_target(path: str) -> str:
    """Only local paths: an attacker's link must not bounce a signed-in clinician off-site."""
    return path if path.startswith("/") and not path.startswith("//") else "/"
