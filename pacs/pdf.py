"""The study's result as a PDF, wrapped as a DICOM Encapsulated PDF instance for the same study.

Viewers that cannot render SR still show a PDF. The page carries no patient name: the DICOM
header around it identifies the patient, as every instance of the study does. fpdf2's core fonts
are Latin-1 only, so all text here is plain ASCII.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import highdicom as hd
from fpdf import FPDF
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from neuroscan.classes import DISCLAIMER, DISPLAY_NAMES
from neuroscan.study import INCONCLUSIVE
from pacs.sr import MANUFACTURER, AnalysedSeries

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PDF_SERIES_NUMBER = 9902
# Patient and study attributes the PDF instance copies from the analysed study.
_STUDY_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                     "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")


def verdict_words(verdict: str) -> str:
    return "Inconclusive (outside the validated domain)" if verdict == INCONCLUSIVE else DISPLAY_NAMES[verdict]


def build_pdf(study: Dataset, study_verdict: str, series: Sequence[AnalysedSeries], notes: Sequence[str],
              model_version: str) -> bytes:
    """The report's PDF bytes: verdict, what each series showed, what was left out and why."""
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15)
    pdf.add_page()
    pdf.set_title("NeuroScan study report")
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "NeuroScan - brain MRI study report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for line in (f"Study date {study.get('StudyDate', '')}   Accession {study.get('AccessionNumber', '')}",
                 f"Study {study.get('StudyDescription', '')}", f"Model version {model_version}"):
        pdf.cell(0, 5, _ascii(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(0, 8, f"Study verdict: {verdict_words(study_verdict)}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for s in series:
        _series_lines(pdf, s)
    for note in notes:
        pdf.multi_cell(0, 5, _ascii(f"Not analysed: {note}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4, f"Not a medical device. {DISCLAIMER}")
    return bytes(pdf.output())


def _series_lines(pdf: FPDF, series: AnalysedSeries) -> None:
    verdict, first = series.verdict, series.headers[0] if series.headers else Dataset()
    keys = ", ".join(str(i + 1) for i in verdict.key_slices)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, _ascii(f"Series {first.get('SeriesNumber', '')} {first.get('SeriesDescription', '')}: "
                          f"{verdict_words(verdict.verdict)}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, f"{verdict.slices} slices: {verdict.counted} counted, {verdict.left_out} left out as "
                         f"outside the validated domain, {verdict.failed} unreadable. Key slices: {keys or '-'}.",
                   new_x="LMARGIN", new_y="NEXT")


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def encapsulate_pdf(pdf: bytes, study: Dataset, model_version: str) -> Dataset:
    """An Encapsulated PDF instance (modality DOC) in a new series of ``study``."""
    now = datetime.now()
    dataset = Dataset()
    for keyword in _STUDY_ATTRIBUTES:
        setattr(dataset, keyword, study.get(keyword, ""))
    dataset.SOPClassUID, dataset.SOPInstanceUID = ENCAPSULATED_PDF, hd.UID()
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.Modality, dataset.SeriesInstanceUID, dataset.SeriesNumber = "DOC", hd.UID(), PDF_SERIES_NUMBER
    dataset.SeriesDescription = f"NeuroScan AI report {model_version}"[:64]
    dataset.Manufacturer, dataset.ConversionType = MANUFACTURER, "WSD"
    dataset.InstanceNumber = 1
    dataset.ContentDate, dataset.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    dataset.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    dataset.BurnedInAnnotation = "YES"  # the page names the study (accession, date)
    dataset.DocumentTitle = "NeuroScan brain MRI study report"
    dataset.ConceptNameCodeSequence = []
    dataset.MIMETypeOfEncapsulatedDocument = "application/pdf"
    dataset.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    dataset.EncapsulatedDocumentLength = len(pdf)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ENCAPSULATED_PDF, dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    return dataset
