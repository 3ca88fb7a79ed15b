"""The worklist: the PACS's studies joined with the worker's verdicts, ordered for triage, filtered.

Pure functions of their inputs (no I/O), so the order a radiologist works through is tested
directly. Suspected tumours come first, then what needs a human because the model could not
decide (inconclusive) or failed, then what is still waiting, and the studies without a tumour
last; within each group the newest study first.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from neuroscan.classes import NO_TUMOUR, TUMOUR_CLASSES
from neuroscan.study import INCONCLUSIVE
from neuroscan.study_results import StudyResult

WAITING = "waiting"  # in the PACS, not yet seen by the worker
STATUS_NAMES: dict[str, str] = {WAITING: "Not analysed yet", "pending": "Analysing", "done": "Analysed",
                                "not_analysed": "Nothing to analyse", "failed": "Analysis failed"}


def status_name(status: str) -> str:
    """The words for an analysis status (a status a newer worker invents is shown as it is)."""
    return STATUS_NAMES.get(status, status)


@dataclass(frozen=True)
class WorklistRow:
    """One study as the worklist shows it (the patient's name only where the site chose to show it)."""

    study_uid: str
    study_date: date | None
    study_time: str
    description: str
    accession: str
    modalities: str
    series: int | None
    instances: int | None
    status: str
    verdict: str | None
    patient_name: str | None = None

    @property
    def triage_rank(self) -> int:
        """0 suspected tumour, 1 inconclusive, 2 failed, 3 waiting, analysing or no MR series, 4 no tumour."""
        if self.status == "done" and self.verdict in TUMOUR_CLASSES:
            return 0
        if self.status == "done" and self.verdict == INCONCLUSIVE:
            return 1
        if self.status == "failed":
            return 2
        if self.status == "done" and self.verdict == NO_TUMOUR:
            return 4
        return 3


@dataclass(frozen=True)
class WorklistFilter:
    """Empty fields do not filter; ``status`` is one of :data:`STATUS_NAMES` or ``suspected``."""

    status: str | None = None
    since: date | None = None
    until: date | None = None


def worklist(studies: Iterable[dict[str, Any]], results: dict[str, StudyResult],
             show_patient_name: bool = False) -> list[WorklistRow]:
    """Join QIDO-RS ``studies`` with ``results`` by StudyInstanceUID, in triage order."""
    rows = [_row(study, results.get(study["StudyInstanceUID"]), show_patient_name) for study in studies
            if study.get("StudyInstanceUID")]
    rows.sort(key=lambda r: (r.study_date or date.min, r.study_time), reverse=True)
    return sorted(rows, key=lambda r: r.triage_rank)  # stable: newest first within a rank


def matches(row: WorklistRow, wanted: WorklistFilter) -> bool:
    """Whether ``row`` passes the filter (a study without a date fails any date bound)."""
    if wanted.status == "suspected" and row.triage_rank != 0:
        return False
    if wanted.status not in (None, "suspected") and row.status != wanted.status:
        return False
    if wanted.since and (row.study_date is None or row.study_date < wanted.since):
        return False
    return not (wanted.until and (row.study_date is None or row.study_date > wanted.until))


def _row(study: dict[str, Any], result: StudyResult | None, show_patient_name: bool) -> WorklistRow:
    modalities = study.get("ModalitiesInStudy")
    return WorklistRow(
        study_uid=study["StudyInstanceUID"],
        study_date=_dicom_date(study.get("StudyDate")),
        study_time=str(study.get("StudyTime") or ""),
        description=str(study.get("StudyDescription") or ""),
        accession=str(study.get("AccessionNumber") or ""),
        modalities=", ".join(modalities) if isinstance(modalities, list) else str(modalities or ""),
        series=_int(study.get("NumberOfStudyRelatedSeries")),
        instances=_int(study.get("NumberOfStudyRelatedInstances")),
        status=WAITING if result is None else result.status,
        verdict=None if result is None else result.verdict,
        patient_name=str(study.get("PatientName") or "") if show_patient_name else None,
    )


def _dicom_date(value: Any) -> date | None:
    """DICOM DA (``20261130``); None for an empty or malformed one rather than failing the list."""
    try:
        return datetime.strptime(str(value), "%Y%m%d").date() if value else None
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
