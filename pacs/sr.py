"""The study's result as a DICOM Comprehensive SR (TID 1500 Measurement Report, built by highdicom).

Every viewer that reads SR shows it inside the study: one measurement group for the study verdict
(referencing its key slices), then for each series one group per finding, referencing every slice
with that finding: the slice's class where it counts, "inconclusive" where the slice is outside the
validated domain (the verdict rule leaves it out, so the SR does not give it a class either).

Grouped by finding, not one group per slice: a viewer lists a handful of findings instead of 150
groups, and the SR of a 150-slice series builds in 0.3 s instead of 1.3-2 s (highdicom copies and
searches the whole content tree), which was most of a study's write-back. Per-slice probabilities
stay in the results store (the dashboard's strip chart). Classes are coded in a private scheme
(``99NEUROSCAN``): the model's four labels are not SNOMED concepts, and a private scheme says so
instead of pretending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from neuroscan.classes import CLASSES, DISCLAIMER, DISPLAY_NAMES, NO_TUMOUR
from neuroscan.study import INCONCLUSIVE, SeriesVerdict, SliceAnswer

SCHEME = "99NEUROSCAN"
VERDICT_CODES = {name: Code(name.upper(), SCHEME, DISPLAY_NAMES[name]) for name in CLASSES}
VERDICT_CODES[INCONCLUSIVE] = Code("INCONCLUSIVE", SCHEME, "Inconclusive (outside the validated domain)")
MR_BRAIN = Code("24590-2", "LN", "MR Brain")
SR_SERIES_NUMBER = 9901
MANUFACTURER = "NeuroScan"


@dataclass(frozen=True)
class AnalysedSeries:
    """One analysed series: its verdict and, in slice order, each slice's header and answer."""

    verdict: SeriesVerdict
    headers: Sequence[Dataset]
    answers: Sequence[SliceAnswer]


def build_sr(study_verdict: str, series: Sequence[AnalysedSeries], model_version: str) -> hd.sr.ComprehensiveSR:
    """The SR instance for one study and model version (new series and instance UIDs each time)."""
    algorithm = hd.sr.AlgorithmIdentification(name="NeuroScan brain tumour classifier", version=model_version)
    groups = [_verdict_group(study_verdict, series, algorithm)]
    groups += [group for s in series for group in _finding_groups(s)]
    report = hd.sr.MeasurementReport(observation_context=_observer(model_version), procedure_reported=MR_BRAIN,
                                     imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    content = report[0]
    content.ContentSequence.append(hd.sr.TextContentItem(
        name=codes.DCM.Comment, value=f"Not a medical device. {DISCLAIMER}"[:1024],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    evidence = [header for s in series for header in s.headers]
    return hd.sr.ComprehensiveSR(
        evidence=evidence, content=content, series_instance_uid=hd.UID(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"NeuroScan AI result {model_version}"[:64],
    )


def slice_findings(answers: Sequence[SliceAnswer]) -> dict[str, list[int]]:
    """Slice indices (in series order) per finding: the class of each slice that counts,
    INCONCLUSIVE for one outside the validated domain; unanswered slices have none."""
    findings: dict[str, list[int]] = {}
    for index, answer in enumerate(answers):
        if answer.error is None and answer.label is not None:
            findings.setdefault(answer.label if answer.counts else INCONCLUSIVE, []).append(index)
    return findings


def preload() -> None:
    """Build and drop one SR of a made-up slice: highdicom reads the DICOM standard's module tables
    (0.4 s) on the first SR of a process, which would otherwise land on the first study after each
    start of the worker."""
    header = Dataset()
    header.SOPClassUID, header.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", hd.UID()  # MR Image Storage
    header.StudyInstanceUID, header.SeriesInstanceUID = hd.UID(), hd.UID()
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "StudyDate", "StudyTime"):
        setattr(header, keyword, "")
    answer = SliceAnswer(str(header.SOPInstanceUID), NO_TUMOUR, {NO_TUMOUR: 1.0})
    verdict = SeriesVerdict(str(header.SeriesInstanceUID), NO_TUMOUR, key_slices=[0], slices=1, counted=1,
                            left_out=0, failed=0)
    build_sr(NO_TUMOUR, [AnalysedSeries(verdict, [header], [answer])], "preload")


def _observer(model_version: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name="NeuroScan", manufacturer_name=MANUFACTURER,
                                                       model_name=f"EfficientNet-Lite0 {model_version}"[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))


def _verdict_group(verdict: str, series: Sequence[AnalysedSeries],
                   algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The study verdict, referencing the key slices of every analysed series."""
    keys = [_source(s.headers[i]) for s in series for i in s.verdict.key_slices]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Study verdict"),
        algorithm_id=algorithm, source_images=keys or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DCM.Finding, VERDICT_CODES[verdict])])


def _finding_groups(series: AnalysedSeries) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One group per finding of the series, referencing its slices (the algorithm is named once,
    in the verdict group)."""
    number = series.headers[0].get("SeriesNumber", "")
    return [hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=_slices_named(number, finding, indices)),
        source_images=[_source(series.headers[i]) for i in indices],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DCM.Finding, VERDICT_CODES[finding])])
        for finding, indices in slice_findings(series.answers).items()]


def _slices_named(series_number: object, finding: str, indices: Sequence[int]) -> str:
    """The group's tracking identifier, e.g. "Series 3: glioma, 12 slices"."""
    return f"Series {series_number}: {finding}, {len(indices)} slice{'s' * (len(indices) != 1)}"[:64]


def _source(header: Dataset) -> hd.sr.SourceImageForMeasurementGroup:
    return hd.sr.SourceImageForMeasurementGroup(str(header.SOPClassUID), str(header.SOPInstanceUID))
