"""Dashboard flows that need no TorchServe: sign-in, access control, upload errors, a stopped server."""

import sqlite3
import time

import pytest
from dashboard_fixtures import (
    ADMIN,
    CLINICIAN,
    mri_image,
    sign_in,
    submit_sign_in,
    upload,
)
from nicegui import app
from nicegui.testing import User

pytestmark = pytest.mark.asyncio


async def test_unauthenticated_visit_lands_on_sign_in(user: User) -> None:
    await user.open("/")
    await user.should_see(marker="sign-in")
    await user.should_not_see(marker="upload")
    await user.should_see(marker="disclaimer")


async def test_sign_in_with_good_password_reaches_new_case(user: User) -> None:
    await sign_in(user, CLINICIAN)
    await user.should_see(marker="upload")
    await user.should_see("New case")
    await user.should_not_see("Operator")  # clinicians get no operator link


async def test_sign_in_with_bad_password_is_refused(user: User) -> None:
    await user.open("/")
    submit_sign_in(user, CLINICIAN[0], "not-the-password")
    await user.should_see("Wrong user name or password.")
    await user.should_not_see(marker="upload")


async def test_non_image_upload_is_explained_and_not_stored(user: User, dashboard_env) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, ("notes.txt", b"this is a referral letter, not an image"))
    await user.should_see("Unsupported file type", retries=20)
    assert not _stored_cases(dashboard_env.database)


async def test_stopped_server_gives_plain_message(user: User, dashboard_env) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image())
    await user.should_see(marker="preview", retries=30)  # decoded locally even without the server
    await user.should_see("The analysis server cannot be reached", retries=50)
    await user.should_see("Server: unavailable")
    assert not _stored_cases(dashboard_env.database)


async def test_expired_session_returns_to_sign_in(user: User) -> None:
    await sign_in(user, CLINICIAN)
    session = app.storage.user["session"]  # the browser's session, as the middleware reads it
    app.storage.user["session"] = {**session, "expires_at": time.time() - 1}
    await user.open("/history")
    await user.should_see(marker="sign-in")
    await user.should_not_see(marker="search-text")


async def test_operator_page_is_for_admins_only(user: User) -> None:
    await sign_in(user, CLINICIAN, "/operator")
    await user.should_see(marker="forbidden")
    await user.should_not_see(marker="scale-up-1.0")


async def test_operator_page_explains_a_stopped_server(user: User) -> None:
    await sign_in(user, ADMIN, "/operator")
    await user.should_see(marker="models-error")
    await user.should_see("The analysis server cannot be reached")


async def test_metrics_endpoint_counts_sign_ins_without_a_session(user: User) -> None:
    await user.open("/")
    submit_sign_in(user, CLINICIAN[0], "wrong-password-1")
    await user.should_see("Wrong user name or password.")
    response = await user.http_client.get("/metrics")
    assert response.status_code == 200
    assert 'neuroscan_dashboard_sign_ins_total{outcome="failure"} 1.0' in response.text


def _stored_cases(database) -> list:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT id FROM cases").fetchall()
