"""Analysed studies for the dashboard's study tests, written to the results store as the PACS worker writes them.

A study is an MR series made from real training slices (``dicom_series``); each slice gets the
model's answer the test chooses, the series and study verdicts come from the core's aggregation
rule (``neuroscan.study``), and the tumour slices get a heatmap. :class:`FakePacs` stands in for
the dashboard's PACS connection where a test needs no real Orthanc.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from dashboard_fixtures import mri_image
from dicom_series import mr_series, study_attributes, to_bytes
from PIL import Image, ImageDraw

from dashboard.images import png_bytes
from neuroscan.classes import CLASSES
from neuroscan.study import SliceAnswer, aggregate_series, aggregate_study
from neuroscan.study_results import StudyResults

MODEL_VERSION = "1.1.0"


@dataclass
class MadeStudy:
    """A study in the results store and the PACS's view of it (QIDO attributes, instance files by Orthanc id)."""

    study_uid: str
    verdict: str
    key_slices: list[int]
    qido: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def answer(instance_uid: str, label: str, p: float, in_domain: bool = True) -> SliceAnswer:
    """The model called the slice ``label`` with probability ``p``; the rest spread evenly."""
    rest = (1 - p) / (len(CLASSES) - 1)
    return SliceAnswer(instance_uid, label, {c: p if c == label else rest for c in CLASSES}, in_domain=in_domain)


def red_heatmap() -> bytes:
    """A 224-pixel RGBA heatmap with one hot spot, as the handler's Grad-CAM returns."""
    image = Image.new("RGBA", (224, 224), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((70, 70, 150, 150), fill=(255, 0, 0, 220))
    return png_bytes(image)


def make_study(results: StudyResults, calls: list[tuple[str, float]] | None, *, date: str = "20261130",
               accession: str = "ACC0001", description: str = "MR BRAIN", status: str = "done",
               out_of_domain: frozenset[int] = frozenset()) -> MadeStudy:
    """One MR series whose slice k the model called ``calls[k]``; ``calls=None`` leaves the study unanalysed."""
    attributes = study_attributes(accession, description)
    attributes.StudyDate = date
    slices = mr_series(attributes, [mri_image("notumor", k) for k in range(len(calls or [None]))])
    qido = {"StudyInstanceUID": attributes.StudyInstanceUID, "StudyDate": date, "StudyTime": "101500",
            "StudyDescription": description, "AccessionNumber": accession, "ModalitiesInStudy": "MR",
            "NumberOfStudyRelatedSeries": 1, "NumberOfStudyRelatedInstances": len(slices),
            "PatientName": str(attributes.PatientName)}
    made = MadeStudy(attributes.StudyInstanceUID, "", [], qido,
                     {f"orthanc-{ds.SOPInstanceUID}": to_bytes(ds) for ds in slices})
    if calls is None:
        return made
    series_uid = slices[0].SeriesInstanceUID
    answers = [answer(ds.SOPInstanceUID, label, p, k not in out_of_domain)
               for k, (ds, (label, p)) in enumerate(zip(slices, calls))]
    verdict = aggregate_series(series_uid, answers)
    results.start_series(made.study_uid, series_uid, MODEL_VERSION)
    heatmaps = {a.instance_uid: red_heatmap() for a in answers if a.label != "notumor"}
    stored = [asdict(a) | {"orthanc_id": f"orthanc-{a.instance_uid}"} for a in answers]
    results.finish_series(series_uid, MODEL_VERSION, status, verdict.verdict if status == "done" else None,
                          verdict.to_dict(), stored, heatmaps)
    made.verdict = aggregate_study([verdict]) if status == "done" else ""
    made.key_slices = verdict.key_slices
    results.save_study(made.study_uid, MODEL_VERSION, f"orthanc-study-{accession}", status,
                       made.verdict or None, [])
    return made


class FakePacs:
    """The dashboard's PACS connection with the studies given; records what was stored."""

    def __init__(self, *studies: MadeStudy) -> None:
        self.studies = list(studies)
        self.stored: list[list[bytes]] = []
        self.asked_for_names: list[bool] = []

    async def search_studies(self, include_patient_name: bool = False) -> list[dict[str, Any]]:
        self.asked_for_names.append(include_patient_name)
        return [{k: v for k, v in s.qido.items() if include_patient_name or k != "PatientName"} for s in self.studies]

    async def instance_file(self, orthanc_id: str) -> bytes:
        return next(s.files[orthanc_id] for s in self.studies if orthanc_id in s.files)

    async def store(self, files: list[bytes]) -> dict[str, Any]:
        self.stored.append(files)
        return {}

    async def aclose(self) -> None:
        pass
