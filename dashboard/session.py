"""Signed-in sessions kept in NiceGUI's per-browser user storage, and the guard for every page.

The guard is an HTTP middleware, so no page can forget it: any request but the sign-in page,
NiceGUI's own assets and the Prometheus endpoint is redirected to ``/login`` unless it carries a
live session. Sessions end after ``session_hours`` even if the browser stays open.
"""

import time
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import app
from starlette.middleware.base import BaseHTTPMiddleware

from dashboard.auth import Account

LOGIN_PATH = "/login"
PUBLIC_PATHS = frozenset({LOGIN_PATH, "/metrics"})
_KEY = "session"


@dataclass(frozen=True)
class Session:
    """Who is signed in, with which role, until when (epoch seconds)."""

    username: str
    role: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def start_session(account: Account, hours: float) -> Session:
    """Sign ``account`` in for this browser."""
    session = Session(account.username, account.role, time.time() + hours * 3600)
    app.storage.user[_KEY] = {"username": session.username, "role": session.role, "expires_at": session.expires_at}
    return session


def end_session() -> None:
    """Sign this browser out."""
    app.storage.user.pop(_KEY, None)


def current_session() -> Session | None:
    """This browser's session if it has one that has not expired."""
    stored = app.storage.user.get(_KEY)
    if not stored or stored["expires_at"] <= time.time():
        return None
    return Session(**stored)


class AuthMiddleware(BaseHTTPMiddleware):
    """Send every unauthenticated page request to the sign-in page, remembering where it was going."""

    async def dispatch(self, request: Request, call_next):
        path = request.url.path
        if path.startswith("/_nicegui") or path in PUBLIC_PATHS or current_session() is not None:
            return await call_next(request)
        return RedirectResponse(f"{LOGIN_PATH}?redirect_to={quote(path)}")
