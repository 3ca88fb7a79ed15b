"""The SR's content (pacs/sr.py) on a hand-made series: one group per finding, every answered
slice referenced once under its finding, out-of-domain slices never given a class.

The SR of a real analysed study, read back from Orthanc, is checked in tests/test_pacs.py.
"""

import numpy as np
from pydicom import Dataset

from neuroscan.study import INCONCLUSIVE, SliceAnswer, aggregate_series
from pacs.sr import AnalysedSeries, build_sr, preload, slice_findings
from tests.dicom_series import dciodvfy_errors, mr_series, study_attributes

LABELS = ["notumor", "glioma", "glioma", "glioma", "notumor", "glioma"]


def answer(uid: str, label: str, in_domain: bool = True, error: str | None = None) -> SliceAnswer:
    tumour = 0.9 if label != "notumor" else 0.1
    probabilities = {"glioma": tumour, "meningioma": 0.0, "notumor": 1 - tumour, "pituitary": 0.0}
    return SliceAnswer(uid, None if error else label, {} if error else probabilities, in_domain=in_domain,
                       error=error)


def analysed_series() -> AnalysedSeries:
    """Six slices: slice 4 outside the domain, slice 5 refused by the server."""
    headers = mr_series(study_attributes(), [np.full((8, 8), k, np.uint8) for k in range(len(LABELS))])
    answers = [answer(str(h.SOPInstanceUID), label, in_domain=k != 3, error="400" if k == 4 else None)
               for k, (h, label) in enumerate(zip(headers, LABELS))]
    return AnalysedSeries(aggregate_series(str(headers[0].SeriesInstanceUID), answers), headers, answers)


def measurement_groups(sr: Dataset) -> list[Dataset]:
    (measurements,) = [item for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
    return list(measurements.ContentSequence)


def group_summary(group: Dataset) -> tuple[str, str, list[str]]:
    """(tracking identifier, finding code, referenced SOPInstanceUIDs) of one measurement group."""
    items = list(group.ContentSequence)
    identifier = next(str(i.TextValue) for i in items if i.ValueType == "TEXT")
    finding = next(str(i.ConceptCodeSequence[0].CodeValue) for i in items if i.ValueType == "CODE"
                   and i.ConceptNameCodeSequence[0].CodeValue == "121071")
    images = [str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in items if i.ValueType == "IMAGE"]
    return identifier, finding, images


def test_slice_findings_gives_out_of_domain_slices_no_class_and_skips_refused_ones():
    series = analysed_series()
    assert slice_findings(series.answers) == {"notumor": [0], "glioma": [1, 2, 5], INCONCLUSIVE: [3]}


def test_sr_has_the_verdict_then_one_group_per_finding_referencing_its_slices():
    series = analysed_series()
    uids = [str(h.SOPInstanceUID) for h in series.headers]
    groups = [group_summary(g) for g in measurement_groups(build_sr(series.verdict.verdict, [series], "2.0.0"))]
    assert groups[0] == ("Study verdict", "GLIOMA", [uids[i] for i in series.verdict.key_slices])
    assert groups[1:] == [("Series 1: notumor, 1 slice", "NOTUMOR", [uids[0]]),
                          ("Series 1: glioma, 3 slices", "GLIOMA", [uids[1], uids[2], uids[5]]),
                          ("Series 1: inconclusive, 1 slice", "INCONCLUSIVE", [uids[3]])]


def test_sr_of_a_150_slice_series_is_valid_dicom_with_every_slice_in_its_evidence(tmp_path):
    headers = mr_series(study_attributes(), [np.full((8, 8), k % 256, np.uint8) for k in range(150)])
    answers = [answer(str(h.SOPInstanceUID), "glioma" if 60 <= k < 80 else "notumor") for k, h in enumerate(headers)]
    series = AnalysedSeries(aggregate_series(str(headers[0].SeriesInstanceUID), answers), headers, answers)
    sr = build_sr(series.verdict.verdict, [series], "2.0.0")
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    listed = {str(i.ReferencedSOPInstanceUID) for s in evidence.ReferencedSeriesSequence for i in s.ReferencedSOPSequence}
    assert listed == {str(h.SOPInstanceUID) for h in headers}
    assert len(measurement_groups(sr)) == 3  # the verdict, 130 no-tumour slices, 20 glioma slices
    assert dciodvfy_errors(sr, tmp_path) == []


def test_preload_builds_an_sr_without_a_study():
    preload()  # the worker calls it at start, before any study exists
