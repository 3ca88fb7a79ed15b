"""Sign-in page: the only page reachable without a session."""

from nicegui import run, ui

from dashboard.pages.layout import frame
from dashboard.services import services
from dashboard.session import current_session, start_session


@ui.page("/login")
def login_page(redirect_to: str = "/") -> None:
    """Ask for user name and password; on success go where the visitor was heading."""
    target = _safe_target(redirect_to)
    if current_session() is not None:
        ui.navigate.to(target)
        return

    async def attempt() -> None:
        shared = services()
        # scrypt is deliberately slow: run it off the event loop so other clinicians' pages stay live
        account = await run.io_bound(shared.accounts.authenticate, username.value or "", password.value or "")
        shared.metrics.sign_ins.labels(outcome="success" if account else "failure").inc()
        if account is None:
            password.value = ""
            error.text = "Wrong user name or password."
            error.visible = True
            return
        start_session(account, shared.settings.session_hours)
        ui.navigate.to(target)

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
