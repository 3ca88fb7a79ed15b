"""The study's result as a DICOM Comprehensive SR (TID 1500 Measurement Report, built by highdicom).

Every viewer that reads SR shows it inside the study: one measurement group for the study verdict
(referencing its key slices), and one per analysed slice with its class and tumour probability,
referencing that slice. Classes are coded in a private scheme (``99NEUROSCAN``): the model's four
labels are not SNOMED concepts, and a private scheme says so instead of pretending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from neuroscan.classes import CLASSES, DISCLAIMER, DISPLAY_NAMES
from neuroscan.study import INCONCLUSIVE, SeriesVerdict, SliceAnswer

SCHEME = "99NEUROSCAN"
VERDICT_CODES = {name: Code(name.upper(), SCHEME, DISPLAY_NAMES[name]) for name in CLASSES}
VERDICT_CODES[INCONCLUSIVE] = Code("INCONCLUSIVE", SCHEME, "Inconclusive (outside the validated domain)")
TUMOUR_PROBABILITY = Code("TUMOURPROB", SCHEME, "Tumour probability (1 - p(no tumour))")
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
    groups += [_slice_group(header, answer, index)
               for s in series for index, (header, answer) in enumerate(zip(s.headers, s.answers))
               if answer.error is None and answer.label is not None]
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


def _slice_group(header: Dataset, answer: SliceAnswer, index: int) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One slice's class and tumour probability; ``index`` is its place in the ordered series.

    The algorithm is named once, in the verdict group: repeating it in each of a series' 150
    slice groups made the SR a third larger and slower to build.
    """
    name = f"Series {header.get('SeriesNumber', '')} slice {index + 1}"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name), source_images=[_source(header)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DCM.Finding, VERDICT_CODES[answer.label])],
        measurements=[hd.sr.Measurement(name=TUMOUR_PROBABILITY, value=round(answer.tumour_probability, 4),
                                        unit=codes.UCUM.NoUnits)])


def _source(header: Dataset) -> hd.sr.SourceImageForMeasurementGroup:
    return hd.sr.SourceImageForMeasurementGroup(str(header.SOPClassUID), str(header.SOPInstanceUID))
