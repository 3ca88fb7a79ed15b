"""Analysed studies for the dashboard's study tests, written to the results store as the PACS worker writes them.

A study is an MR series made from real training slices (``dicom_series``); each slice gets the
model's answer the test chooses, the series and study verdicts come from the core's aggregation
rule (``neuroscan.study``), and the tumour slices get a heatmap. :class:`FakePacs` stands in for
the dashboard's PACS connection where a test needs no real Orthanc.
"""

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import httpx
from dashboard_fixtures import mri_image
from dicom_series import mr_series, study_attributes, to_bytes
from PIL import Image, ImageDraw
from pydicom import Dataset

from dashboard.images import png_bytes
from dashboard.pacs import PacsFailure
from neuroscan.classes import CLASSES
from neuroscan.study import SliceAnswer, aggregate_series, aggregate_study
from neuroscan.study_results import StudyResults

MODEL_VERSION = "1.1.0"
# Six slices, a glioma on the third and fourth (the key slices), nothing elsewhere.
GLIOMA_RUN = [("notumor", 0.95), ("notumor", 0.9), ("glioma", 0.9), ("glioma", 0.85), ("notumor", 0.7),
              ("notumor", 0.95)]


@dataclass
class MadeStudy:
    """A study's instances and its QIDO-RS attributes; ``verdict`` and ``key_slices`` once analysed."""

    study_uid: str
    qido: dict[str, Any]
    datasets: list[Dataset]
    verdict: str = ""
    key_slices: list[int] = field(default_factory=list)

    def files(self) -> dict[str, bytes]:
        """Part 10 bytes by SOPInstanceUID."""
        return {ds.SOPInstanceUID: to_bytes(ds) for ds in self.datasets}


def answer(instance_uid: str, label: str, p: float, in_domain: bool = True) -> SliceAnswer:
    """The model called the slice ``label`` with probability ``p``; the rest spread evenly."""
    rest = (1 - p) / (len(CLASSES) - 1)
    return SliceAnswer(instance_uid, label, {c: p if c == label else rest for c in CLASSES}, in_domain=in_domain)


def red_heatmap() -> bytes:
    """A 224-pixel RGBA heatmap with one hot spot, as the handler's Grad-CAM returns."""
    image = Image.new("RGBA", (224, 224), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((70, 70, 150, 150), fill=(255, 0, 0, 220))
    return png_bytes(image)


def mr_study(slices: int, *, label: str = "notumor", date: str = "20261130", accession: str = "ACC0001",
             description: str = "MR BRAIN") -> MadeStudy:
    """One axial MR series of ``slices`` real training slices of class ``label`` (a made-up patient, ``Test^Patient``)."""
    attributes = study_attributes(accession, description)
    attributes.StudyDate = date
    datasets = mr_series(attributes, [mri_image(label, k) for k in range(slices)])
    qido = {"StudyInstanceUID": attributes.StudyInstanceUID, "StudyDate": date, "StudyTime": "101500",
            "StudyDescription": description, "AccessionNumber": accession, "ModalitiesInStudy": "MR",
            "NumberOfStudyRelatedSeries": 1, "NumberOfStudyRelatedInstances": slices,
            "PatientName": str(attributes.PatientName)}
    return MadeStudy(attributes.StudyInstanceUID, qido, datasets)


def second_series(made: MadeStudy, slices: int, description: str = "AX T2 FLAIR") -> MadeStudy:
    """Another MR series of the same study (the view :func:`record_analysis` takes for one series)."""
    # a copy: the new instances' elements would otherwise be the first slice's own, and overwrite it
    datasets = mr_series(copy.deepcopy(made.datasets[0]), [mri_image("glioma", k) for k in range(slices)],
                         series_number=2, description=description)
    made.qido["NumberOfStudyRelatedSeries"] += 1
    made.qido["NumberOfStudyRelatedInstances"] += slices
    return MadeStudy(made.study_uid, made.qido, datasets)


def fake_orthanc_id(uid: str) -> str:
    """The stand-in PACS's id of the study or instance with DICOM UID ``uid``."""
    return f"orthanc-{uid}"


def record_analysis(results: StudyResults, made: MadeStudy, calls: list[tuple[str, float]], *,
                    status: str = "done", out_of_domain: frozenset[int] = frozenset(),
                    orthanc_id: Callable[[str], str] = fake_orthanc_id) -> MadeStudy:
    """Write what the worker would for slice k called ``calls[k]``: series rows, heatmaps, study verdict."""
    series_uid = made.datasets[0].SeriesInstanceUID
    answers = [answer(ds.SOPInstanceUID, label, p, k not in out_of_domain)
               for k, (ds, (label, p)) in enumerate(zip(made.datasets, calls))]
    verdict = aggregate_series(series_uid, answers)
    results.start_series(made.study_uid, series_uid, MODEL_VERSION)
    heatmaps = {a.instance_uid: red_heatmap() for a in answers if a.label != "notumor"}
    rows = [{"orthanc_id": orthanc_id(a.instance_uid), **asdict(a)} for a in answers]
    first = made.datasets[0]
    summary = verdict.to_dict() | {"description": str(first.SeriesDescription), "number": int(first.SeriesNumber)}
    results.finish_series(series_uid, MODEL_VERSION, status, verdict.verdict if status == "done" else None,
                          summary, rows, heatmaps)
    made.verdict = aggregate_study([verdict]) if status == "done" else ""
    made.key_slices = verdict.key_slices
    results.save_study(made.study_uid, MODEL_VERSION, orthanc_id(made.study_uid), status,
                       made.verdict or None, [])
    return made


def make_study(results: StudyResults, calls: list[tuple[str, float]] | None, *, date: str = "20261130",
               accession: str = "ACC0001", status: str = "done",
               out_of_domain: frozenset[int] = frozenset()) -> MadeStudy:
    """A study of ``len(calls)`` slices analysed as ``calls`` says (``None``: one slice, not analysed yet)."""
    made = mr_study(len(calls or [None]), date=date, accession=accession)
    if calls is None:
        return made
    return record_analysis(results, made, calls, status=status, out_of_domain=out_of_domain)


class FakePacs:
    """The dashboard's PACS connection with the studies given; records what was stored."""

    def __init__(self, *studies: MadeStudy) -> None:
        self.studies = list(studies)
        self.stored: list[list[bytes]] = []
        self.asked_for_names: list[bool] = []
        self.failures = 0  # instance fetches to refuse, as a PACS that is restarting does

    async def search_studies(self, include_patient_name: bool = False, since: date | None = None,
                             until: date | None = None) -> list[dict[str, Any]]:
        """Every study, whatever the dates: the page must filter them itself too (a PACS may ignore the range)."""
        self.asked_for_names.append(include_patient_name)
        return [{k: v for k, v in s.qido.items() if include_patient_name or k != "PatientName"} for s in self.studies]

    async def study_details(self, orthanc_id: str) -> dict[str, str]:
        study = next(s for s in self.studies if fake_orthanc_id(s.study_uid) == orthanc_id)
        return {key: study.qido[key] for key in ("StudyDate", "StudyDescription", "AccessionNumber")}

    async def instance_file(self, orthanc_id: str) -> bytes:
        if self.failures:
            self.failures -= 1
            raise PacsFailure("instance file: the PACS answered 503")
        return next(data for s in self.studies for uid, data in s.files().items() if fake_orthanc_id(uid) == orthanc_id)

    async def store(self, files: list[bytes]) -> dict[str, Any]:
        self.stored.append(files)
        return {}

    async def aclose(self) -> None:
        pass


def store_in_orthanc(orthanc, made: MadeStudy) -> None:
    """Store the study's files through Orthanc's REST API, as another modality would."""
    for data in made.files().values():
        httpx.post(f"{orthanc.url}/instances", content=data, auth=orthanc.auth, timeout=30).raise_for_status()


def orthanc_id(orthanc, uid: str) -> str:
    """Orthanc's id of the study or instance whose DICOM UID is ``uid``."""
    found = httpx.post(f"{orthanc.url}/tools/lookup", content=uid, auth=orthanc.auth, timeout=30)
    return next(item["ID"] for item in found.raise_for_status().json() if item["Type"] in ("Study", "Instance"))
