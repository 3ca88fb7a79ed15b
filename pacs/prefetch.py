"""A head start on each study: every MR instance is fetched and classified the moment it arrives.

Orthanc calls a study stable only ``StableAge`` seconds after its last instance; analysing it only
then put the whole fetch and inference after that wait (a 150-slice series took 7.8 s end to end).
The worker hands each ``NewInstance`` change to :class:`SlicePrefetcher`, which loads and classifies
the slice in the background, so by the time the study is stable most answers are ready.

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


class SlicePrefetcher:
    """Background load + classify per instance id, at most ``capacity`` slices held at once."""

    def __init__(self, loader: SliceLoader, classifier: SliceClassifier, capacity: int) -> None:
        self.loader, self.classifier, self.capacity = loader, classifier, capacity
        self._tasks: OrderedDict[str, asyncio.Task[LoadedSlice | None]] = OrderedDict()

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
            return await self.classifier.prepare(loaded)
        except (PacsError, ServerUnavailable) as exc:  # the analysis will try again and wait properly
            log.debug("no head start for instance %s: %s", orthanc_id, exc)
            return None
