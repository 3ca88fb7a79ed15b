"""PACS worker settings: one dataclass read from ``config/pacs.toml`` and ``NEUROSCAN_PACS_*`` variables."""

from dataclasses import dataclass
from pathlib import Path

from neuroscan.pacs_client import PacsSettings
from neuroscan.settings import REPO_ROOT, load_section
from neuroscan.study import AggregationRule

DEFAULT_CONFIG = REPO_ROOT / "config" / "pacs.toml"
ENV_PREFIX = "NEUROSCAN_PACS_"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker reads from configuration; config/pacs.toml says what each means."""

    pacs_kind: str
    pacs_url: str
    credentials_file: Path
    inference_url: str
    management_url: str
    key_file: Path
    management_key_file: str
    model_name: str
    key_renew_margin_s: float
    key_check_s: float
    request_timeout_s: float
    max_parallel_slices: int
    prefetch_slices: int
    results_db: Path
    poll_interval_s: float
    dicomweb_poll_s: float
    stable_age_s: float
    lookback_days: int
    poll_limit: int
    retry_interval_s: float
    metrics_port: int
    metrics_host: str
    threshold: float
    min_adjacent: int
    min_counted_fraction: float

    @property
    def pacs(self) -> PacsSettings:
        return PacsSettings(self.pacs_url, self.credentials_file, self.request_timeout_s, self.pacs_kind)

    @property
    def management_key(self) -> str | None:
        """The fixed management key, if a file for it is configured (Kubernetes' Secret)."""
        return Path(self.management_key_file).read_text().strip() if self.management_key_file else None

    @property
    def rule(self) -> AggregationRule:
        return AggregationRule(self.threshold, self.min_adjacent, self.min_counted_fraction)


def load_settings(environ: dict[str, str] | None = None) -> WorkerSettings:
    """The TOML file (``NEUROSCAN_PACS_CONFIG`` may name another) with environment overrides."""
    return load_section(WorkerSettings, DEFAULT_CONFIG, "pacs", ENV_PREFIX, environ)
