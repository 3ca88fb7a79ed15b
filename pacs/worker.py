"""The PACS worker: follows the PACS and analyses every study that becomes stable.

Orthanc (the embedded default) is followed through its change feed (:class:`ChangeFollower`); any
other PACS through DICOMweb alone, by polling QIDO-RS (:class:`StudyPoller`).

On Orthanc each instance is classified as it arrives (``NewInstance``, :mod:`pacs.prefetch`); the
study's verdict and reports wait until the study is complete: ``StableStudy``, or sooner once
every MR series holds the number of images its headers declare.

Restart-safe: the feed position is stored after each change handled, and a series already
analysed by the served model version is never sent to TorchServe again (a restart mid-study
re-analyses only the series that had not finished). One bad study is recorded as failed with its
reason and the feed moves on; an unreachable PACS or TorchServe stops the feed where it is and is
retried, so no study is skipped while a server is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta

from neuroscan.pacs_client import PacsClient, PacsError
from neuroscan.study import (
    SeriesVerdict,
    SliceAnswer,
    aggregate_series,
    aggregate_study,
)
from neuroscan.study_results import StudyResults
from pacs.inference import ServerUnavailable, TorchServeCalls
from pacs.metrics import WorkerMetrics
from pacs.pipeline import (
    HeadStart,
    LoadedSlice,
    ReportWriter,
    SeriesRef,
    SeriesSelector,
    SliceClassifier,
    SliceLoader,
)
from pacs.prefetch import SlicePrefetcher
from pacs.settings import WorkerSettings
from pacs.sr import AnalysedSeries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyOutcome:
    """What one pass over a study did (for the log)."""

    status: str
    verdict: str | None = None


class StudyTally:
    """Seconds per pipeline step and slices answered ahead (:mod:`pacs.prefetch`), summed over a
    study's series: the log line the bench reads its parts from."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.answered_ahead = 0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


class StudyAnalyser:
    """Steps 1-5 of :mod:`pacs.pipeline` for one study, recorded in the results store."""

    def __init__(self, settings: WorkerSettings, pacs: PacsClient, server: TorchServeCalls, results: StudyResults,
                 metrics: WorkerMetrics) -> None:
        self.settings, self.pacs, self.server, self.results, self.metrics = settings, pacs, server, results, metrics
        self.selector = SeriesSelector()
        self.loader = SliceLoader(pacs, settings.max_parallel_slices)
        self.classifier = SliceClassifier(server, settings.max_parallel_slices)
        self.writer = ReportWriter(pacs)
        self.prefetcher = SlicePrefetcher(self.loader, self.classifier, settings.prefetch_slices)

    async def analyse(self, study_id: str, only_if_complete: bool = False) -> StudyOutcome:
        """Analyse the study; with ``only_if_complete``, only if every MR series in it holds as many
        instances as its headers declare (else "waiting": its StableStudy will come)."""
        study = await self.pacs.study(study_id)
        study_uid = study["MainDicomTags"]["StudyInstanceUID"]
        version = await self.server.served_version()
        chosen, notes = self.selector.select(await self.pacs.study_series(study_id))
        if only_if_complete and not (chosen and all(self._complete(r) for r in chosen)):
            return StudyOutcome("waiting")
        done_before = self.results.study(study_uid, version)
        if done_before is not None and done_before.status == "done" and all(self._stored(r, version) for r in chosen):
            return StudyOutcome("unchanged", done_before.verdict)  # e.g. stable again after our own STOW
        analysed, fresh, timer = [], [], StudyTally()
        for ref in chosen:
            series, series_notes, is_new = await self._series(study_uid, ref, version, timer)
            notes += series_notes
            if series is not None:
                analysed.append(series)
                fresh += [ref.series_uid] if is_new else []
        if not analysed:
            self.results.save_study(study_uid, version, study_id, "not_analysed", None, notes)
            return StudyOutcome("not_analysed")
        verdict = aggregate_study([s.verdict for s in analysed])
        if not fresh and done_before is not None and done_before.status == "done":
            return StudyOutcome("unchanged", done_before.verdict)
        with timer.step("write_back"):
            report_uids = await self.writer.write(study_id, verdict, analysed, notes, version)
        self.results.save_study(study_uid, version, study_id, "done", verdict, notes, report_uids)
        self.metrics.study(verdict)
        log.info("study %s analysed: %s (%d series, %d new)", study_uid, verdict, len(analysed), len(fresh),
                 extra={"timings": timer.seconds, "slices": sum(s.verdict.slices for s in analysed),
                        "answered_ahead": timer.answered_ahead, "before_stable": only_if_complete})
        return StudyOutcome("done", verdict)

    def _complete(self, ref: SeriesRef) -> bool:
        return self.prefetcher.declared_size(ref.series_uid) == len(ref.instances)

    def _stored(self, ref: SeriesRef, version: str) -> bool:
        """Whether ``ref`` was analysed by ``version`` with exactly the instances Orthanc lists now: then
        nothing needs fetching (each analysed study turns stable again once its SR and PDF are stored)."""
        stored = self.results.series_result(ref.series_uid, version)
        return (stored is not None and stored.status == "done"
                and sorted(row["orthanc_id"] for row in stored.slices) == sorted(ref.instances))

    async def _series(self, study_uid: str, ref: SeriesRef, version: str,
                      timer: StudyTally) -> tuple[AnalysedSeries | None, list[str], bool]:
        """One series: analysed now, or (already done by this version) its stored answers reused."""
        with timer.step("fetch"):
            slices, notes = await self.loader.load(ref, self._head_start(version))
        if not slices:
            return None, notes + [f"{ref.name}: no image to analyse"], False
        headers = [s.header for s in slices]
        stored = self.results.series_result(ref.series_uid, version)
        if stored is not None and stored.status == "done" and _same_slices(stored.slices, headers):
            answers = [SliceAnswer.from_dict(row) for row in stored.slices]
            return AnalysedSeries(SeriesVerdict.from_dict(stored.summary), headers, answers), notes, False
        self.results.start_series(study_uid, ref.series_uid, version)
        timer.answered_ahead += sum(s.reply is not None for s in slices)
        with timer.step("inference"):
            answers, heatmaps, _ = await self.classifier.classify(slices)
        verdict = aggregate_series(ref.series_uid, answers, self.settings.rule)
        failed = [f"{ref.name}: slice {i + 1} refused ({a.error})" for i, a in enumerate(answers) if a.error]
        rows = [{"orthanc_id": s.orthanc_id, **asdict(a)} for s, a in zip(slices, answers)]
        self.results.finish_series(ref.series_uid, version, "done", verdict.verdict,
                                   verdict.to_dict() | {"description": ref.description, "number": ref.number},
                                   rows, heatmaps)
        self.metrics.series(verdict.verdict, answers)
        return AnalysedSeries(verdict, headers, answers), notes + failed, True


    def _head_start(self, version: str) -> HeadStart:
        """The prefetched slices that ``version`` answered (a model swapped meanwhile means fetch anew)."""
        async def take(orthanc_id: str) -> LoadedSlice | None:
            early = await self.prefetcher.take(orthanc_id)
            return early if early is not None and early.answered_by(version) else None
        return take


def _same_slices(rows: list[dict], headers: list) -> bool:
    """Whether stored answers are for exactly these slices (an instance that arrived later means no)."""
    return [row["instance_uid"] for row in rows] == [str(h.SOPInstanceUID) for h in headers]


class Feed:
    """How the worker learns of studies; subclasses say what one step of following the PACS is.

    An unreachable PACS or TorchServe stops the feed where it is and is retried, so no study is
    skipped while a server is down."""

    def __init__(self, settings: WorkerSettings, analyser: StudyAnalyser, results: StudyResults) -> None:
        self.settings, self.analyser, self.results = settings, analyser, results

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                idle = await self.step()
            except (PacsError, ServerUnavailable) as exc:
                log.warning("waiting for the PACS or TorchServe: %s", exc)
                self.analyser.metrics.unavailable()
                idle = True
                await _sleep(stop, self.settings.retry_interval_s)
            if idle:
                await _sleep(stop, self.poll_s)

    @property
    def poll_s(self) -> float:
        """Seconds between looks at the PACS when nothing was new."""
        return self.settings.poll_interval_s

    async def step(self) -> bool:
        """Handle what is new; True when there was nothing (the feed then sleeps ``poll_s``)."""
        raise NotImplementedError

    async def _study(self, study_id: str, only_if_complete: bool = False) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.analyser.analyse(study_id, only_if_complete)
        except (PacsError, ServerUnavailable):
            raise  # not the study's fault: the feed stays here and is retried
        except Exception as exc:  # a study nobody foresaw must not stop the others
            log.exception("study %s could not be analysed", study_id)
            self.analyser.metrics.failed()
            self.analyser.results.save_study(await self._uid(study_id), "unknown", study_id, "failed", None,
                                             [f"analysis failed: {type(exc).__name__}: {exc}"[:500]])
            return
        if outcome.status != "waiting":
            self.analyser.metrics.study_seconds(time.perf_counter() - started)
        log.info("study %s: %s %s", study_id, outcome.status, outcome.verdict or "")

    async def _uid(self, study_id: str) -> str:
        try:
            return (await self.analyser.pacs.study(study_id))["MainDicomTags"]["StudyInstanceUID"]
        except (PacsError, KeyError):
            return study_id


class ChangeFollower(Feed):
    """Orthanc: reads ``/changes`` from the stored position; classifies each new instance ahead
    (:mod:`pacs.prefetch`) and analyses each StableStudy, or earlier a study whose MR series are
    all complete by their declared size."""

    async def step(self) -> bool:
        for study_uid in self.analyser.prefetcher.complete_studies():
            study_id = await self.analyser.pacs.lookup_study(study_uid)
            if study_id is not None:
                await self._study(study_id, only_if_complete=True)
        page = await self.analyser.pacs.changes(self.results.last_change())
        for change in page.get("Changes", []):
            if change.get("ChangeType") == "NewInstance":
                self.analyser.prefetcher.arrived(change["ID"])
            elif change.get("ChangeType") == "StableStudy":
                await self._study(change["ID"])
            self.results.set_last_change(int(change["Seq"]))
        if not page.get("Changes"):
            self.results.set_last_change(max(self.results.last_change(), int(page.get("Last", 0))))
        return bool(page.get("Done", True))


class StudyPoller(Feed):
    """A PACS with DICOMweb alone, which has no change feed: QIDO-RS lists the studies dated within
    ``lookback_days``, and a study is analysed once its instance count has stayed the same for
    ``stable_age_s`` (what Orthanc's StableStudy means).

    Nothing needs storing to be restart-safe: after a restart every listed study is looked at
    again, and one whose series are all analysed with the same instances is "unchanged" without a
    file fetched (our own SR and PDF change the count once more, which ends the same way)."""

    def __init__(self, settings: WorkerSettings, analyser: StudyAnalyser, results: StudyResults) -> None:
        super().__init__(settings, analyser, results)
        self._counts: dict[str, tuple[int, float]] = {}  # study UID -> (instances, since when)
        self._analysed: dict[str, int] = {}  # study UID -> instances when last analysed

    @property
    def poll_s(self) -> float:
        return self.settings.dicomweb_poll_s

    async def step(self) -> bool:
        since = date.today() - timedelta(days=self.settings.lookback_days)
        listed = await self.analyser.pacs.search_studies(self.settings.poll_limit, study_date=f"{since:%Y%m%d}-")
        if len(listed) >= self.settings.poll_limit:
            log.warning("the PACS listed %d studies, the poll limit: older ones in the window may be missed",
                        len(listed))
        now, counts = time.monotonic(), {}
        for study in listed:
            uid, count = study["StudyInstanceUID"], int(study.get("NumberOfStudyRelatedInstances") or 0)
            seen_count, since_when = self._counts.get(uid, (None, now))
            counts[uid] = (count, since_when if seen_count == count else now)
        self._counts = counts  # studies no longer listed are forgotten
        for uid, (count, since_when) in counts.items():
            if now - since_when >= self.settings.stable_age_s and self._analysed.get(uid) != count:
                await self._study(uid)
                self._analysed[uid] = count
        return True


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
