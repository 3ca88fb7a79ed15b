"""The dashboard's side of the PACS: one lazily made client, and messages a clinician can act on.

Orthanc writes its credentials file when it first starts, which may be after the dashboard, so
the core's :class:`PacsClient` (which reads the file when made) is made on first use and made
again after a failure, which also picks up new credentials after a PACS reinstall. Pages reach
the PACS only through this class, so tests can put a stand-in in its place.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from dashboard.settings import Settings
from neuroscan.pacs_client import PacsClient, PacsError, PacsSettings, open_pacs

log = logging.getLogger(__name__)
STUDY_DETAILS = ("StudyDate", "StudyDescription", "AccessionNumber")

class PacsFailure(Exception):
    """A PACS call failed; ``message`` is for the clinician, the exception text for the log."""

    message = "The PACS cannot be reached or refused the request. Try again later or tell your operator."


class Pacs:
    """Search, show and store studies through the PACS named in the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = PacsSettings(settings.pacs_url, settings.pacs_credentials_file, settings.pacs_timeout_s,
                                     settings.pacs_kind)
        self.limit = settings.worklist_limit
        self._client: PacsClient | None = None

    async def search_studies(self, include_patient_name: bool = False, since: date | None = None,
                             until: date | None = None) -> list[dict[str, Any]]:
        """QIDO-RS: the worklist's attributes of (at most ``worklist_limit``) studies, dated within the bounds.

        The PACS filters the dates, so a bounded search finds recent studies however many old ones it holds.
        """
        dates = f"{since:%Y%m%d}-" if since else "-"
        dates += f"{until:%Y%m%d}" if until else ""
        return await self._call("search", lambda c: c.search_studies(self.limit, include_patient_name,
                                                                    None if dates == "-" else dates))

    async def study_details(self, orthanc_id: str) -> dict[str, str]:
        """A study's date, description and accession (never the patient's attributes)."""
        tags = (await self._call("study", lambda c: c.study(orthanc_id))).get("MainDicomTags", {})
        return {key: str(tags[key]) for key in STUDY_DETAILS if tags.get(key)}

    async def instance_file(self, orthanc_id: str) -> bytes:
        """One instance's DICOM file (the page decodes it as the model did)."""
        return await self._call("instance file", lambda c: c.instance_file(orthanc_id))

    async def store(self, files: list[bytes]) -> dict[str, Any]:
        """STOW-RS the files into the PACS (each file's own study)."""
        return await self._call("store", lambda c: c.store(files))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, what: str, call: Callable[[PacsClient], Awaitable[Any]]) -> Any:
        try:
            if self._client is None:
                self._client = open_pacs(self.settings)
            return await call(self._client)
        except (PacsError, OSError, ValueError, KeyError) as exc:  # OSError etc.: no or bad credentials file
            log.warning("PACS %s failed: %s", what, exc)
            await self.aclose()
            raise PacsFailure(f"{what}: {exc}") from exc
