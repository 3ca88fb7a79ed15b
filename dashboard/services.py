"""The app's shared objects, built once at start-up and reached by pages through :func:`services`.

Like FastAPI's shared dependencies: pages stay thin and never build their own clients or stores.
"""

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from dashboard.audit import AuditLog
from dashboard.auth import AccountStore
from dashboard.client import TorchServeClient
from dashboard.metrics import DashboardMetrics
from dashboard.pacs import Pacs
from dashboard.settings import Settings
from dashboard.store import CaseStore
from dashboard.throttle import SignInThrottle, ThrottlePolicy
from neuroscan.study_results import StudyResults


@dataclass(frozen=True)
class Services:
    """Settings plus the long-lived objects built from them."""

    settings: Settings
    accounts: AccountStore
    cases: CaseStore
    torchserve: TorchServeClient
    metrics: DashboardMetrics
    audit: AuditLog
    sign_in_throttle: SignInThrottle
    pacs: Pacs

    @cached_property
    def study_results(self) -> StudyResults:
        """The PACS worker's results store, opened on first use, so a dashboard deployed without the PACS starts."""
        return StudyResults(self.settings.study_results_database)


_current: list[Services] = []


def init_services(settings: Settings) -> Services:
    """Build the shared objects (replacing any from an earlier app in this process, as tests do)."""
    built = Services(
        settings=settings,
        accounts=AccountStore(settings.accounts_file),
        cases=CaseStore(settings.database),
        torchserve=TorchServeClient(settings),
        metrics=DashboardMetrics(),
        audit=AuditLog(settings.database),
        sign_in_throttle=SignInThrottle(_sign_in_policy(settings, settings.sign_in_account_lock_after),
                                        _sign_in_policy(settings, settings.sign_in_client_lock_after)),
        pacs=Pacs(settings),
    )
    _current[:] = [built]
    return built


def services() -> Services:
    """The shared objects of the running app."""
    if not _current:
        raise RuntimeError("dashboard services are not initialised; start the app with dashboard.app.main()")
    return _current[0]


def replace_services(**changes: Any) -> Services:
    """Swap some shared objects of the running app (tests put a stand-in PACS here)."""
    _current[:] = [replace(services(), **changes)]
    return _current[0]


def _sign_in_policy(settings: Settings, lock_after: int) -> ThrottlePolicy:
    return ThrottlePolicy(free_failures=settings.sign_in_free_failures, delay_s=settings.sign_in_delay_s,
                          max_delay_s=settings.sign_in_max_delay_s, lock_after=lock_after,
                          lock_s=settings.sign_in_lock_minutes * 60, window_s=settings.sign_in_window_minutes * 60)
