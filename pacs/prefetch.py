"""A head start on each study: every MR instance is fetched and classified the moment it arrives.

Orthanc calls a study stable only ``StableAge`` seconds after its last instance; analysing it only
then put the whole fetch and inference after that wait (a 150-slice series took 7.8 s end to end).
The worker hands each ``NewInstance`` change to :class:`SlicePrefetcher`, which loads and classifies
the slice in the background, so by the time the study is stable most answers are ready.

It also notices when a series is complete by its own account: MR scanners write the number of
images of the acquisition into each one (ImagesInAcquisition). Once that many slices of a series
are answered, :meth:`SlicePrefetcher.complete_studies` names its study, and the worker analyses
the study at once if every MR series in it is complete that way, instead of waiting out StableAge.

It is only a head start: anything it has not finished, evicted, or failed on (PACS or TorchServe
away) is done by the study's own analysis, which stays the single place where results are decided,
stored and made restart-safe. A worker killed mid-study loses nothing but the head start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

from neuroscan.pacs_client import PacsError
from pacs.inference import ServerUnavailable
from pacs.pipeline import LoadedSlice, SliceClassifier, SliceLoader

log = logging.getLogger(__name__)
# Series whose declared size is remembered (oldest forgotten first): a few days of a busy scanner.
_SERIES_KEPT = 4096


class SlicePrefetcher:
    """Background load + classify per instance id, at most ``capacity`` slices held at once."""

    def __init__(self, loader: SliceLoader, classifier: SliceClassifier, capacity: int) -> None:
        self.loader, self.classifier, self.capacity = loader, classifier, capacity
        self._tasks: OrderedDict[str, asyncio.Task[LoadedSlice | None]] = OrderedDict()
        self._declared: OrderedDict[str, int] = OrderedDict()  # series UID -> ImagesInAcquisition
        self._answered: dict[str, int] = {}  # series UID -> slices answered ahead
        self._complete: dict[str, None] = {}  # StudyInstanceUIDs with a series that reached its size

    def arrived(self, orthanc_id: str) -> None:
        """Start on a new instance; the oldest unclaimed slice is dropped beyond ``capacity``."""
        if orthanc_id in self._tasks or self.capacity <= 0:
            return
        self._tasks[orthanc_id] = asyncio.create_task(self._prepare(orthanc_id))
        while len(self._tasks) > self.capacity:
            _, oldest = self._tasks.popitem(last=False)
            oldest.cancel()

    async def take(self, orthanc_id: str) -> LoadedSlice | None:
        """The prepared slice (it is handed out once), or None if there is no head start for it."""
        task = self._tasks.pop(orthanc_id, None)
        if task is None:
            return None
        with contextlib.suppress(asyncio.CancelledError):
            return await task
        return None

    def declared_size(self, series_uid: str) -> int | None:
        """How many images the series' own headers say it has (None: they do not say)."""
        return self._declared.get(series_uid)

    def complete_studies(self) -> list[str]:
        """The studies in which a series has had all its declared slices answered since the last call."""
        studies, self._complete = list(self._complete), {}
        return studies

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _prepare(self, orthanc_id: str) -> LoadedSlice | None:
        try:
            loaded = await self.loader.fetch(orthanc_id)
            if not isinstance(loaded, LoadedSlice) or not loaded.is_mr_image:
                return None  # not for the model (CT, a localiser, our own reports, a broken file)
            prepared = await self.classifier.prepare(loaded)
            self._count(loaded)
            return prepared
        except (PacsError, ServerUnavailable) as exc:  # the analysis will try again and wait properly
            log.debug("no head start for instance %s: %s", orthanc_id, exc)
            return None

    def _count(self, answered: LoadedSlice) -> None:
        """One more answered slice of its series; its study is named once the series is complete."""
        declared = answered.declared_size
        if declared is None:
            return
        series = str(answered.header.SeriesInstanceUID)
        self._declared[series] = declared
        self._answered[series] = self._answered.get(series, 0) + 1
        while len(self._declared) > _SERIES_KEPT:
            forgotten, _ = self._declared.popitem(last=False)
            self._answered.pop(forgotten, None)
        if self._answered[series] >= declared:
            self._complete[str(answered.header.StudyInstanceUID)] = None
