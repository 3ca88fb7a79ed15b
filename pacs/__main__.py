"""``python -m pacs``: run the PACS worker until SIGINT/SIGTERM (settings: config/pacs.toml)."""

import asyncio
import contextlib
import logging
import signal

from neuroscan.pacs_client import open_pacs
from neuroscan.study_results import StudyResults
from neuroscan.telemetry import configure_json_logging, init_sentry
from pacs.inference import TorchServeCalls
from pacs.metrics import WorkerMetrics
from pacs.settings import WorkerSettings, load_settings
from pacs.sr import preload
from pacs.worker import ChangeFollower, StudyAnalyser, StudyPoller

log = logging.getLogger("pacs")


async def run(settings: WorkerSettings, stop: asyncio.Event, metrics: WorkerMetrics | None = None) -> None:
    """Follow the PACS until ``stop`` is set; the PACS account file must exist (Orthanc writes it)."""
    metrics = metrics or WorkerMetrics()
    while not settings.credentials_file.is_file():  # Orthanc's launcher writes it on first start
        log.info("waiting for the PACS account file %s", settings.credentials_file)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.retry_interval_s)
        if stop.is_set():
            return
    preload()
    results = StudyResults(settings.results_db)
    server = TorchServeCalls(settings.inference_url, settings.management_url, settings.key_file,
                             settings.model_name, settings.request_timeout_s, settings.key_renew_margin_s,
                             management_key=settings.management_key)
    renewals = asyncio.create_task(server.keys.keep_fresh(settings.key_check_s))
    async with open_pacs(settings.pacs) as pacs:
        analyser = StudyAnalyser(settings, pacs, server, results, metrics)
        feed = ChangeFollower if pacs.has_change_feed else StudyPoller
        try:
            await feed(settings, analyser, results).run(stop)
        finally:
            renewals.cancel()
            await analyser.prefetcher.aclose()
            await server.aclose()


async def _main() -> None:
    settings = load_settings()
    configure_json_logging("pacs-worker")
    for chatty in ("httpx", "highdicom"):  # a line per request / per copied module drowns the worker's own
        logging.getLogger(chatty).setLevel(logging.WARNING)
    init_sentry("pacs-worker", None)
    metrics = WorkerMetrics()
    metrics.serve(settings.metrics_port, settings.metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("following the %s PACS at %s (results in %s)", settings.pacs_kind, settings.pacs_url, settings.results_db)
    await run(settings, stop, metrics)


if __name__ == "__main__":
    asyncio.run(_main())
