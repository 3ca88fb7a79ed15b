"""Dashboard settings: one dataclass read from ``config/dashboard.toml`` and ``NEUROSCAN_*`` variables.

The TOML file holds the defaults a developer runs with; deployments (and the tests) change single
values through the environment without editing the file, which is why every field has an
environment override of the same name.
"""

from dataclasses import dataclass
from pathlib import Path

from neuroscan.settings import REPO_ROOT, load_section

DEFAULT_CONFIG = REPO_ROOT / "config" / "dashboard.toml"
ENV_PREFIX = "NEUROSCAN_"


@dataclass(frozen=True)
class Settings:
    """Everything the dashboard reads from configuration; see config/dashboard.toml for meanings."""

    host: str
    port: int
    inference_url: str
    management_url: str
    metrics_url: str
    key_file: Path
    key_renew_margin_s: float
    key_check_s: float
    model_name: str
    connect_timeout_s: float
    inference_timeout_s: float
    management_timeout_s: float
    max_parallel_requests: int
    database: Path
    accounts_file: Path
    storage_secret_file: Path
    admin_user: str
    session_hours: float
    low_confidence_threshold: float
    max_upload_mb: int
    thumbnail_px: int
    status_refresh_s: float
    metrics_refresh_s: float
    metrics_history_points: int
    sign_in_free_failures: int
    sign_in_delay_s: float
    sign_in_max_delay_s: float
    sign_in_account_lock_after: int
    sign_in_client_lock_after: int
    sign_in_lock_minutes: float
    sign_in_window_minutes: float
    pacs_kind: str
    pacs_url: str
    pacs_credentials_file: Path
    pacs_timeout_s: float
    study_results_database: Path
    worklist_limit: int
    worklist_days: int
    show_patient_name: bool


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (``NEUROSCAN_CONFIG`` may name another) and apply environment overrides."""
    return load_section(Settings, DEFAULT_CONFIG, "dashboard", ENV_PREFIX, environ)
