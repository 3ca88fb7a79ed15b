"""An async client for the PACS: Orthanc's REST API (change feed, files) and DICOMweb (QIDO, STOW).

The PACS worker and the dashboard both talk to the PACS, and neither may import the other, so the
client lives in the core. Searching and storing go through DICOMweb, which any PACS speaks; the
change feed, instance files and previews are Orthanc's own REST API (the embedded default).
Credentials are read from Orthanc's generated ``credentials.json`` on every new client, so a
restarted PACS with a new account is picked up by making a new client.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

# QIDO-RS attributes of a study the worklist shows (none of them names the patient).
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
_TAGS = {"StudyInstanceUID": "0020000D", "StudyDate": "00080020", "StudyTime": "00080030",
         "StudyDescription": "00081030", "AccessionNumber": "00080050", "ModalitiesInStudy": "00080061",
         "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
         "PatientName": "00100010"}


class PacsError(RuntimeError):
    """The PACS refused or could not answer a call."""


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS answers and where its account is kept."""

    url: str
    credentials_file: Path
    timeout_s: float = 30.0


def read_credentials(path: Path) -> tuple[str, str]:
    raw = json.loads(Path(path).read_text())
    return raw["username"], raw["password"]


class PacsClient:
    """One pooled httpx client for one PACS; use as ``async with PacsClient(settings) as pacs``."""

    def __init__(self, settings: PacsSettings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(base_url=settings.url.rstrip("/"), timeout=settings.timeout_s,
                                       auth=read_credentials(settings.credentials_file))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- Orthanc REST ------------------------------------------------------------------------
    async def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        """``{"Changes": [...], "Last": seq, "Done": bool}`` after sequence number ``since``."""
        return await self._json("GET", "/changes", params={"since": since, "limit": limit})

    async def study(self, orthanc_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/studies/{orthanc_id}")

    async def study_series(self, orthanc_id: str) -> list[dict[str, Any]]:
        """The study's series, each with its MainDicomTags and instance ids."""
        return await self._json("GET", f"/studies/{orthanc_id}/series")

    async def instance_file(self, orthanc_id: str) -> bytes:
        return (await self._request("GET", f"/instances/{orthanc_id}/file")).content

    async def instance_preview(self, orthanc_id: str) -> bytes:
        """A PNG of the instance as Orthanc renders it (its window, 8 bits)."""
        return (await self._request("GET", f"/instances/{orthanc_id}/preview",
                                    headers={"Accept": "image/png"})).content

    async def lookup_study(self, study_uid: str) -> str | None:
        """Orthanc's id of the study with this StudyInstanceUID, if it holds one."""
        found = await self._json("POST", "/tools/lookup", content=study_uid)
        return next((item["ID"] for item in found if item.get("Type") == "Study"), None)

    async def delete_series(self, orthanc_id: str) -> None:
        await self._request("DELETE", f"/series/{orthanc_id}")

    # ---- DICOMweb ----------------------------------------------------------------------------
    async def search_studies(self, limit: int = 500, include_patient_name: bool = False,
                             study_date: str | None = None) -> list[dict[str, Any]]:
        """QIDO-RS: every study (``study_date``: a DICOM date range such as ``20261101-``) with the worklist's attributes."""
        fields = STUDY_FIELDS + (("PatientName",) if include_patient_name else ())
        params = [("limit", str(limit))] + [("includefield", _TAGS[name]) for name in fields]
        params += [("StudyDate", study_date)] if study_date else []
        found = await self._json("GET", "/dicom-web/studies", params=params,
                                 headers={"Accept": "application/dicom+json"})
        return [{name: _value(item.get(_TAGS[name])) for name in fields} for item in found or []]

    async def store(self, files: list[bytes]) -> dict[str, Any]:
        """STOW-RS ``files`` (Part 10 bytes); raises :class:`PacsError` if any instance is refused."""
        boundary = uuid.uuid4().hex
        body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
                        for f in files) + b"--" + boundary.encode() + b"--\r\n"
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        answer = await self._json("POST", "/dicom-web/studies", content=body, headers=headers)
        failed = (answer or {}).get("00081198", {}).get("Value", [])  # FailedSOPSequence
        if failed:
            raise PacsError(f"the PACS refused {len(failed)} of {len(files)} instances")
        return answer or {}

    # ---- plumbing ----------------------------------------------------------------------------
    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        return response.json() if response.content else None

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PacsError(f"{method} {path}: the PACS cannot be reached ({exc!r})") from exc
        if not response.is_success:
            raise PacsError(f"{method} {path}: the PACS answered {response.status_code}: {response.text[:300]}")
        return response


def _value(element: dict[str, Any] | None) -> Any:
    """The plain value of a DICOM JSON element: one value, a list of several, or ``None``."""
    if not element or not element.get("Value"):
        return None
    values = [v.get("Alphabetic") if isinstance(v, dict) else v for v in element["Value"]]
    return values[0] if len(values) == 1 else values
