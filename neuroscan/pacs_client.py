"""Async clients for the PACS: the embedded Orthanc, or any other PACS through DICOMweb alone.

The PACS worker and the dashboard both talk to the PACS, and neither may import the other, so the
clients live in the core. Searching and storing go through DICOMweb (QIDO-RS, STOW-RS), which any
PACS speaks. :class:`PacsClient` reads studies, series and files through Orthanc's own REST API,
which also has the change feed the worker follows; :class:`DicomwebClient` answers the same calls
from QIDO-RS and WADO-RS only, for a PACS configured with ``kind = "dicomweb"``. Credentials are
read from a ``credentials.json`` (``{"username", "password"}``) on every new client, so a restarted
PACS with a new account is picked up by making a new client.
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
# Series attributes the worker selects series by, as Orthanc's MainDicomTags name them.
_SERIES_TAGS = {"SeriesInstanceUID": "0020000E", "Modality": "00080060", "SeriesNumber": "00200011",
                "SeriesDescription": "0008103E", "Manufacturer": "00080070"}
_SOP_INSTANCE_UID = "00080018"
# Answers come uncompressed: Orthanc gzips each reply for a client that accepts it (httpx does by
# default), which cost Orthanc 11 ms of CPU per instance file, 1.7 s for a 150-slice series, and
# the client as much again to unpack, on the same cores that classify it. The PACS is on the same
# host or network, where bytes are cheap and CPU is not.
_HEADERS = {"Accept-Encoding": "identity"}
KINDS = ("orthanc", "dicomweb")


class PacsError(RuntimeError):
    """The PACS refused or could not answer a call."""


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS answers and where its account is kept."""

    url: str
    credentials_file: Path
    timeout_s: float = 30.0
    kind: str = "orthanc"  # or "dicomweb": then ``url`` is the PACS's DICOMweb root


def open_pacs(settings: PacsSettings) -> PacsClient:
    """The client for the configured kind of PACS."""
    if settings.kind not in KINDS:
        raise ValueError(f"PACS kind {settings.kind!r}: expected one of {', '.join(KINDS)}")
    return DicomwebClient(settings) if settings.kind == "dicomweb" else PacsClient(settings)


def read_credentials(path: Path) -> tuple[str, str]:
    raw = json.loads(Path(path).read_text())
    return raw["username"], raw["password"]


class PacsClient:
    """One pooled httpx client for the embedded Orthanc; use as ``async with PacsClient(settings) as pacs``."""

    dicomweb = "/dicom-web"  # where Orthanc's DICOMweb plugin answers (config/orthanc.json)
    has_change_feed = True
    can_delete = True

    def __init__(self, settings: PacsSettings) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(base_url=settings.url.rstrip("/"), timeout=settings.timeout_s,
                                       auth=read_credentials(settings.credentials_file), headers=_HEADERS)

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

    async def delete_series(self, orthanc_id: str) -> None:
        await self._request("DELETE", f"/series/{orthanc_id}")

    async def lookup_study(self, study_uid: str) -> str | None:
        """Orthanc's id of the study with this StudyInstanceUID, if it holds one."""
        found = await self._json("POST", "/tools/lookup", content=study_uid)
        return next((item["ID"] for item in found or [] if item.get("Type") == "Study"), None)

    # ---- DICOMweb ----------------------------------------------------------------------------
    async def search_studies(self, limit: int = 500, include_patient_name: bool = False,
                             study_date: str | None = None) -> list[dict[str, Any]]:
        """QIDO-RS: every study (``study_date``: a DICOM date range such as ``20261101-``) with the worklist's attributes."""
        fields = STUDY_FIELDS + (("PatientName",) if include_patient_name else ())
        params = [("limit", str(limit))] + [("includefield", _TAGS[name]) for name in fields]
        params += [("StudyDate", study_date)] if study_date else []
        found = await self._qido("/studies", params)
        return [{name: _value(item.get(_TAGS[name])) for name in fields} for item in found or []]

    async def store(self, files: list[bytes]) -> dict[str, Any]:
        """STOW-RS ``files`` (Part 10 bytes); raises :class:`PacsError` if any instance is refused."""
        boundary = uuid.uuid4().hex
        body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
                        for f in files) + b"--" + boundary.encode() + b"--\r\n"
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        answer = await self._json("POST", f"{self.dicomweb}/studies", content=body, headers=headers)
        failed = (answer or {}).get("00081198", {}).get("Value", [])  # FailedSOPSequence
        if failed:
            raise PacsError(f"the PACS refused {len(failed)} of {len(files)} instances")
        return answer or {}

    # ---- plumbing ----------------------------------------------------------------------------
    async def _qido(self, path: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return await self._json("GET", f"{self.dicomweb}{path}", params=params,
                                headers={"Accept": "application/dicom+json"}) or []

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


class DicomwebClient(PacsClient):
    """Any PACS through DICOMweb alone: the calls the worker and the dashboard make of Orthanc's REST
    API, answered from QIDO-RS and WADO-RS in the same shapes (``MainDicomTags``, ``Instances``).

    Ids are DICOM UIDs: a study's is its StudyInstanceUID, a series' ``study/series`` and an
    instance's ``study/series/instance``, the path WADO-RS reads it from. DICOMweb has neither a
    change feed (the worker polls QIDO-RS instead, :class:`pacs.worker.StudyPoller`) nor deletion
    (earlier reports stay beside newer ones).
    """

    dicomweb = ""  # the configured URL is the DICOMweb root itself
    has_change_feed = False
    can_delete = False

    async def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        raise PacsError("a DICOMweb PACS has no change feed: the worker polls it (kind = \"dicomweb\")")

    async def delete_series(self, orthanc_id: str) -> None:
        raise PacsError("DICOMweb cannot delete")

    async def study(self, orthanc_id: str) -> dict[str, Any]:
        params = [("StudyInstanceUID", orthanc_id)] + [("includefield", _TAGS[name]) for name in STUDY_FIELDS]
        found = await self._qido("/studies", params)
        if not found:
            raise PacsError(f"the PACS holds no study {orthanc_id}")
        return {"ID": orthanc_id, "MainDicomTags": {name: _value(found[0].get(tag)) for name, tag in _TAGS.items()
                                                    if name != "PatientName" and found[0].get(tag)}}

    async def study_series(self, orthanc_id: str) -> list[dict[str, Any]]:
        listed = await self._qido(f"/studies/{orthanc_id}/series",
                                  [("includefield", tag) for tag in _SERIES_TAGS.values()])
        return [await self._series(orthanc_id, item) for item in listed]

    async def instance_file(self, orthanc_id: str) -> bytes:
        study, series, instance = orthanc_id.split("/")
        response = await self._request("GET", f"/studies/{study}/series/{series}/instances/{instance}",
                                       headers={"Accept": 'multipart/related; type="application/dicom"'})
        return _first_part(response)

    async def _series(self, study_uid: str, item: dict[str, Any]) -> dict[str, Any]:
        tags = {name: str(_value(item.get(tag))) for name, tag in _SERIES_TAGS.items() if item.get(tag)}
        series_uid = tags["SeriesInstanceUID"]
        instances = await self._qido(f"/studies/{study_uid}/series/{series_uid}/instances",
                                     [("includefield", _SOP_INSTANCE_UID)])
        return {"ID": f"{study_uid}/{series_uid}", "MainDicomTags": tags,
                "Instances": [f"{study_uid}/{series_uid}/{_value(i[_SOP_INSTANCE_UID])}" for i in instances]}


def _first_part(response: httpx.Response) -> bytes:
    """The body of the first part of a multipart/related answer (WADO-RS sends one per instance)."""
    content_type = response.headers.get("Content-Type", "")
    parameters = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p)
    boundary = parameters.get("boundary", "").strip('"')
    if not content_type.startswith("multipart/related") or not boundary:
        raise PacsError(f"WADO-RS answered {content_type!r}, not multipart/related")
    part = response.content.split(b"--" + boundary.encode())[1]
    return part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def _value(element: dict[str, Any] | None) -> Any:
    """The plain value of a DICOM JSON element: one value, a list of several, or ``None``."""
    if not element or not element.get("Value"):
        return None
    values = [v.get("Alphabetic") if isinstance(v, dict) else v for v in element["Value"]]
    return values[0] if len(values) == 1 else values
