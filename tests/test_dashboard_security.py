"""Sign-in throttling (arithmetic with a stepped clock, and the lock as a clinician meets it) and the audit log."""

import sqlite3

import pytest
from dashboard_fixtures import ADMIN, CLINICIAN, eventually, sign_in, submit_sign_in
from nicegui.testing import User
from PIL import Image

from dashboard.audit import AuditLog
from dashboard.images import png_bytes
from dashboard.services import services
from dashboard.throttle import SignInThrottle, Throttle, ThrottlePolicy

POLICY = ThrottlePolicy(free_failures=2, delay_s=2.0, max_delay_s=10.0, lock_after=6, lock_s=900.0, window_s=600.0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [POLICY.delay_after(n) for n in range(1, 7)] == [0.0, 0.0, 2.0, 4.0, 8.0, 10.0]


def test_too_early_attempts_are_refused_then_the_key_locks() -> None:
    clock = Clock()
    throttle = Throttle(POLICY, clock)
    for _ in range(2):  # the free failures: no wait
        throttle.failure("dr.a")
        assert throttle.refusal("dr.a") is None
    throttle.failure("dr.a")  # third: 2 s
    refusal = throttle.refusal("dr.a")
    assert (refusal.kind, refusal.wait_s) == ("delay", 2.0)
    clock.now += 1.5
    assert throttle.refusal("dr.a").wait_s == pytest.approx(0.5)
    assert "Wait 1 second before" in throttle.refusal("dr.a").message()
    clock.now += 0.5
    assert throttle.refusal("dr.a") is None
    assert throttle.refusal("dr.b") is None  # keys are independent
    for _ in range(3):  # fourth to sixth failure, each after its wait
        throttle.failure("dr.a")
        if (held := throttle.refusal("dr.a")).kind == "delay":
            clock.now += held.wait_s
    refusal = throttle.refusal("dr.a")
    assert (refusal.kind, refusal.wait_s) == ("locked", 900.0)
    assert "locked for 15 more minutes" in refusal.message()
    clock.now += 899.0
    assert throttle.refusal("dr.a").kind == "locked"
    assert "locked for 1 more minute;" in throttle.refusal("dr.a").message()
    clock.now += 1.0
    assert throttle.refusal("dr.a") is None  # the lock is over and the count starts again
    throttle.failure("dr.a")
    assert throttle.refusal("dr.a") is None


def test_old_failures_are_forgotten_and_success_clears_the_account() -> None:
    clock = Clock()
    throttle = Throttle(POLICY, clock)
    for _ in range(3):
        throttle.failure("dr.a")
    clock.now += 601.0  # past the window: those three no longer count
    throttle.failure("dr.a")
    assert throttle.refusal("dr.a") is None
    throttle.failure("dr.a")
    throttle.failure("dr.a")
    assert throttle.refusal("dr.a").kind == "delay"
    throttle.success("dr.a")
    assert throttle.refusal("dr.a") is None


def test_client_limit_catches_one_machine_trying_many_names() -> None:
    clock = Clock()
    client_policy = ThrottlePolicy(free_failures=100, delay_s=1.0, max_delay_s=1.0, lock_after=4, lock_s=60.0,
                                   window_s=600.0)
    throttle = SignInThrottle(POLICY, client_policy, clock)
    for name in ("a", "b", "c", "d"):
        assert throttle.begin(name, "10.0.0.9") is None
        refusal = throttle.end(name, "10.0.0.9", success=False)
    assert refusal.kind == "locked"
    assert throttle.begin("e", "10.0.0.9").kind == "locked"  # a fresh name from the same client
    assert throttle.begin("e", "10.0.0.10") is None  # another client is not held back
    assert throttle.end("e", "10.0.0.10", success=True) is None


def test_parallel_attempts_for_one_account_are_checked_one_at_a_time() -> None:
    throttle = SignInThrottle(POLICY, POLICY, Clock())
    assert throttle.begin("dr.a", "10.0.0.1") is None
    assert throttle.begin("dr.a", "10.0.0.2").kind == "busy"
    assert throttle.begin("dr.b", "10.0.0.2") is None
    throttle.end("dr.a", "10.0.0.1", success=False)
    assert throttle.begin("dr.a", "10.0.0.2") is None


def test_audit_log_is_append_only(tmp_path) -> None:
    audit = AuditLog(tmp_path / "cases.sqlite3")
    audit.record("dr.a", "open_case", "case 3", "10.0.0.1")
    audit.record("dr.b", "open_study", "study 1.2.3", "10.0.0.2")
    assert [(e.username, e.action, e.target) for e in audit.recent()] == [
        ("dr.b", "open_study", "study 1.2.3"), ("dr.a", "open_case", "case 3")]
    assert [e.username for e in audit.recent(username="dr.a")] == ["dr.a"]
    assert [e.target for e in audit.recent(target="1.2")] == ["study 1.2.3"]
    assert [e.action for e in audit.recent(action="open_case")] == ["open_case"]
    with sqlite3.connect(audit.path) as db:
        for statement in ("UPDATE audit SET username = 'nobody'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    assert len(audit.recent()) == 2
    with pytest.raises(ValueError):
        audit.record("dr.a", "delete_everything")


@pytest.mark.asyncio
async def test_repeated_wrong_passwords_lock_the_account_until_the_lock_ends(user: User) -> None:
    clock = Clock()
    services().sign_in_throttle.set_clock(clock)
    policy = services().sign_in_throttle.accounts.policy
    await user.open("/")
    for attempt in range(1, policy.lock_after + 1):
        await _refused(user, CLINICIAN[0], f"wrong-password-{attempt}")
        await user.should_see("Wrong user name or password.")
        clock.now += policy.max_delay_s  # past any slow-down, well inside the failure window
    await user.should_see("Signing in is locked for 15 more minutes")

    clock.now += 60
    await _refused(user, *CLINICIAN)  # the right password, but too soon
    await user.should_see("Signing in is locked for 14 more minutes")
    await user.should_not_see(f"{CLINICIAN[0]} (")

    clock.now += policy.lock_s
    submit_sign_in(user, *CLINICIAN)
    await user.should_see(f"{CLINICIAN[0]} (", retries=50)  # signed in, on the new-case page
    await user.should_see(marker="upload")
    entries = services().audit.recent()
    assert [(e.username, e.action) for e in entries] == [(CLINICIAN[0], "sign_in"), (CLINICIAN[0], "sign_in_locked")]


async def _refused(user: User, username: str, password: str) -> None:
    """Send the form and wait until the page has answered (it empties the password field on refusal)."""
    submit_sign_in(user, username, password)
    field = next(iter(user.find("Password").elements))
    await eventually(lambda: field.value == "", timeout=10)
    user.find("User name").clear()


@pytest.mark.asyncio
async def test_audit_page_lists_entries_for_admins_only(user: User) -> None:
    await sign_in(user, CLINICIAN, "/audit")
    await user.should_see(marker="forbidden")
    await user.should_not_see(marker="audit-table")
    services().audit.record(CLINICIAN[0], "open_case", "case 7", "127.0.0.1")
    user.find("Sign out").click()
    await sign_in(user, ADMIN, "/audit")
    await user.should_see(marker="audit-table")
    assert _audit_rows(user) == [("admin", "Signed in", ""), ("clinician", "Opened case", "case 7"),
                                 ("clinician", "Signed in", "")]
    user.find(marker="audit-user").type(CLINICIAN[0])
    user.find(marker="audit-action").click()
    user.find("Opened case").click()
    user.find(marker="audit-search").click()
    await user.should_see("1 entry")
    assert _audit_rows(user) == [("clinician", "Opened case", "case 7")]


def _audit_rows(user: User) -> list[tuple[str, str, str]]:
    table = next(iter(user.find(marker="audit-table").elements))
    return [(row["username"], row["action"], row["target"]) for row in table.rows]


@pytest.mark.asyncio
async def test_opening_and_reviewing_a_case_is_audited(user: User) -> None:
    png = png_bytes(Image.new("RGB", (224, 224), (40, 40, 40)))
    probabilities = {"glioma": 0.9, "meningioma": 0.04, "notumor": 0.03, "pituitary": 0.03}
    case_id = services().cases.add(username="dr.x", image_sha256="ab" * 32, thumbnail=png, image=png, heatmap=None,
                                   result={"label": "glioma", "probabilities": probabilities, "confidence": 0.9,
                                           "model_version": "1.1.0", "is_mri": True, "tumour": True})
    await sign_in(user, CLINICIAN, f"/case/{case_id}")
    user.find(marker="agree").click()
    await user.should_see("Review saved.")
    assert [(e.username, e.action, e.target) for e in services().audit.recent()][:2] == [
        (CLINICIAN[0], "review_case", f"case {case_id}"), (CLINICIAN[0], "open_case", f"case {case_id}")]
