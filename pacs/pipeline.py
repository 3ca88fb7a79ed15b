"""The steps of analysing one study, one class each (as MONAI Deploy's operators): DICOM in, DICOM out.

1. :class:`SeriesSelector`: which series are MR image series; why the others are not analysed;
2. :class:`SliceLoader`: fetch a series' instances, drop localisers, order slices along the normal;
3. :class:`SliceClassifier`: every slice through TorchServe at once (it batches them);
4. the series and study verdicts: :mod:`neuroscan.study` (pure, in the core);
5. :class:`ReportWriter`: the SR and the encapsulated PDF into the same study (STOW-RS).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from neuroscan.pacs_client import PacsClient
from neuroscan.study import SliceAnswer, slice_order
from pacs.inference import SliceReply, TorchServeCalls
from pacs.pdf import build_pdf, encapsulate_pdf
from pacs.sr import MANUFACTURER, AnalysedSeries, build_sr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesRef:
    """A series as the PACS lists it: ids and the header fields the selection needs.

    ``orthanc_id`` and ``instances`` are the PACS's own ids: Orthanc's, or on a DICOMweb PACS the
    UID paths :class:`neuroscan.pacs_client.DicomwebClient` reads them by."""

    orthanc_id: str
    series_uid: str
    modality: str
    number: str
    description: str
    manufacturer: str
    instances: tuple[str, ...]

    @classmethod
    def from_orthanc(cls, series: dict[str, Any]) -> SeriesRef:
        tags = series.get("MainDicomTags", {})
        return cls(series["ID"], tags.get("SeriesInstanceUID", ""), tags.get("Modality", "").upper(),
                   tags.get("SeriesNumber", ""), tags.get("SeriesDescription", ""), tags.get("Manufacturer", ""),
                   tuple(series.get("Instances", [])))

    @property
    def name(self) -> str:
        """How notes name the series: its number, modality and description (no patient data)."""
        return f"series {self.number or '?'} ({self.modality or 'no modality'}{', ' + self.description if self.description else ''})"


class SeriesSelector:
    """Step 1: keep MR series; note every other image series; skip NeuroScan's own reports silently."""

    def select(self, series: Sequence[dict[str, Any]]) -> tuple[list[SeriesRef], list[str]]:
        chosen, notes = [], []
        for ref in sorted((SeriesRef.from_orthanc(s) for s in series), key=lambda r: (r.number.zfill(6), r.series_uid)):
            if ref.manufacturer == MANUFACTURER and ref.modality in ("SR", "DOC"):
                continue
            if ref.modality == "MR":
                chosen.append(ref)
            else:
                notes.append(f"{ref.name}: not an MR series")
        return chosen, notes


@dataclass(frozen=True, eq=False)
class LoadedSlice:
    """One instance of a series: Orthanc's id, its header, and the file bytes TorchServe gets, or
    (classified ahead of time by :mod:`pacs.prefetch`) TorchServe's reply instead of the bytes."""

    orthanc_id: str
    header: Dataset
    body: bytes
    reply: SliceReply | None = None

    @property
    def is_localiser(self) -> bool:
        return "LOCALIZER" in [str(v).upper() for v in self.header.get("ImageType", [])]

    @property
    def is_mr_image(self) -> bool:
        """Whether this instance is a slice the model is meant for (MR, not a localiser)."""
        return str(self.header.get("Modality", "")).upper() == "MR" and not self.is_localiser

    @property
    def declared_size(self) -> int | None:
        """How many images its acquisition has, as the scanner wrote it (ImagesInAcquisition)."""
        declared = _int(self.header.get("ImagesInAcquisition"))
        return declared if declared and declared > 0 else None

    def answered_by(self, model_version: str) -> bool:
        """Whether its reply can stand for ``model_version`` (a refusal is about the file, not the model)."""
        return self.reply is not None and (self.reply.answer is None
                                           or str(self.reply.answer.get("model_version")) == model_version)


# How the loader asks for a slice prepared ahead of time (None: fetch it now).
HeadStart = Callable[[str], Awaitable[LoadedSlice | None]]


class SliceLoader:
    """Step 2: an ordered series, without localisers; an unreadable file becomes a note."""

    def __init__(self, pacs: PacsClient, parallel: int) -> None:
        self.pacs, self._parallel = pacs, asyncio.Semaphore(parallel)

    async def load(self, series: SeriesRef, head_start: HeadStart | None = None) -> tuple[list[LoadedSlice], list[str]]:
        loaded = await asyncio.gather(*(self._one(orthanc_id, head_start) for orthanc_id in series.instances))
        slices = [s for s in loaded if isinstance(s, LoadedSlice)]
        notes = [f"{series.name}: instance {s} could not be read as DICOM" for s in loaded if isinstance(s, str)]
        localisers = sum(s.is_localiser for s in slices)
        if localisers:
            notes.append(f"{series.name}: {localisers} localiser image(s) left out")
        slices = [s for s in slices if not s.is_localiser]
        order = slice_order([_floats(s.header.get("ImagePositionPatient")) for s in slices],
                            _floats(slices[0].header.get("ImageOrientationPatient")) if slices else None,
                            [_int(s.header.get("InstanceNumber")) for s in slices])
        return [slices[i] for i in order], notes

    async def _one(self, orthanc_id: str, head_start: HeadStart | None) -> LoadedSlice | str:
        early = await head_start(orthanc_id) if head_start is not None else None
        return early if early is not None else await self.fetch(orthanc_id)

    async def fetch(self, orthanc_id: str) -> LoadedSlice | str:
        """The instance's file and header, or its id when the file is not readable DICOM."""
        async with self._parallel:
            body = await self.pacs.instance_file(orthanc_id)
        try:
            header = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
        except (InvalidDicomError, ValueError, TypeError, KeyError, EOFError, OSError):
            return orthanc_id  # a broken file is this instance's problem, not the series'
        return LoadedSlice(orthanc_id, header, body)


class SliceClassifier:
    """Step 3: each slice's answer and heatmap; a refused slice keeps its refusal code."""

    def __init__(self, server: TorchServeCalls, parallel: int) -> None:
        self.server, self._parallel = server, asyncio.Semaphore(parallel)

    async def classify(self, slices: Sequence[LoadedSlice]) -> tuple[list[SliceAnswer], dict[str, bytes], str | None]:
        """(answers in slice order, heatmap PNG per SOPInstanceUID, the model version that answered)."""
        replies = await asyncio.gather(*(self._one(s) for s in slices))
        answers, heatmaps, version = [], {}, None
        for loaded, reply in zip(slices, replies):
            uid = str(loaded.header.SOPInstanceUID)
            if reply.answer is None:
                answers.append(SliceAnswer(uid, error=reply.error))
                continue
            answer = reply.answer
            version = answer.get("model_version", version)
            if "heatmap_png" in answer:
                heatmaps[uid] = base64.b64decode(answer["heatmap_png"])
            answers.append(SliceAnswer(uid, answer["label"], answer["probabilities"], bool(answer.get("is_mri", True)),
                                       bool(answer.get("in_domain", True))))
        return answers, heatmaps, version

    async def prepare(self, loaded: LoadedSlice) -> LoadedSlice:
        """``loaded`` with TorchServe's reply in place of its bytes (a head start holds no files)."""
        return dataclasses.replace(loaded, body=b"", reply=await self._one(loaded))

    async def _one(self, loaded: LoadedSlice) -> SliceReply:
        if loaded.reply is not None:
            return loaded.reply
        async with self._parallel:
            return await self.server.explain(loaded.body)


class ReportWriter:
    """Step 5: the SR and the PDF into the study, replacing this model version's earlier pair."""

    def __init__(self, pacs: PacsClient) -> None:
        self.pacs = pacs

    async def write(self, study_id: str, study_verdict: str, series: Sequence[AnalysedSeries], notes: Sequence[str],
                    model_version: str) -> list[str]:
        """Store both; returns their SOPInstanceUIDs."""
        study_header = series[0].headers[0]
        sr = build_sr(study_verdict, series, model_version)
        pdf = encapsulate_pdf(build_pdf(study_header, study_verdict, series, notes, model_version), study_header,
                              model_version)
        await self.pacs.store([_part10(sr), _part10(pdf)])
        await self._remove_earlier(study_id, {str(sr.SeriesDescription), str(pdf.SeriesDescription)},
                                   keep={str(sr.SeriesInstanceUID), str(pdf.SeriesInstanceUID)})
        return [str(sr.SOPInstanceUID), str(pdf.SOPInstanceUID)]

    async def _remove_earlier(self, study_id: str, descriptions: set[str], keep: set[str]) -> None:
        """Delete this model version's earlier reports, after the new ones are in (a viewer never
        finds the study without a result). A DICOMweb PACS cannot delete: there they stay, older."""
        if not self.pacs.can_delete:
            return
        for series in await self.pacs.study_series(study_id):
            ref = SeriesRef.from_orthanc(series)
            if ref.manufacturer == MANUFACTURER and ref.description in descriptions and ref.series_uid not in keep:
                await self.pacs.delete_series(ref.orthanc_id)


def _part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _floats(value: Any) -> list[float] | None:
    try:
        return [float(v) for v in value] if value is not None else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
