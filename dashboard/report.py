"""One-page PDF report of a case: image, heatmap, probabilities, model version and disclaimer.

Built with fpdf2's core fonts (Latin-1 only), so every text here stays plain ASCII/Latin-1.
"""

import io

from fpdf import FPDF
from PIL import Image

from dashboard.findings import DISCLAIMER, DISPLAY_NAMES, headline, warnings_for
from dashboard.images import overlay
from dashboard.store import Case
from neuroscan.classes import CLASSES

_MARGIN = 15
_IMAGE_MM = 85
_BAR_MM = 100


def build_report(case: Case, low_confidence_threshold: float) -> bytes:
    """The PDF bytes for ``case``."""
    pdf = FPDF(format="A4")
    pdf.set_margins(_MARGIN, _MARGIN)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_title(f"NeuroScan case {case.id}")
    _header(pdf, case)
    _images(pdf, case)
    _diagnosis(pdf, case, low_confidence_threshold)
    _probabilities(pdf, case)
    _details(pdf, case)
    _disclaimer(pdf)
    return bytes(pdf.output())


def _header(pdf: FPDF, case: Case) -> None:
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(0, 10, f"NeuroScan - brain MRI report, case {case.id}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    lines = [
        f"Analysed {case.created_at:%Y-%m-%d %H:%M} UTC by {case.username}",
        f"Model version {case.model_version}   Image SHA-256 {case.image_sha256}",
    ]
    for line in lines:
        pdf.cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _images(pdf: FPDF, case: Case) -> None:
    """The model's view and, when the server sent one, the Grad-CAM overlay beside it."""
    top = pdf.get_y()
    pdf.image(Image.open(io.BytesIO(case.image)), x=_MARGIN, y=top, w=_IMAGE_MM, h=_IMAGE_MM)
    if case.heatmap:
        pdf.image(overlay(case.image, case.heatmap), x=_MARGIN + _IMAGE_MM + 10, y=top, w=_IMAGE_MM, h=_IMAGE_MM)
    pdf.set_y(top + _IMAGE_MM + 1)
    pdf.set_font("Helvetica", "I", 8)
    pdf.cell(_IMAGE_MM + 10, 5, "Image as seen by the model")
    pdf.cell(0, 5, "Grad-CAM heatmap: regions that drove the result" if case.heatmap else "",
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _diagnosis(pdf: FPDF, case: Case, threshold: float) -> None:
    line = headline(case.result)
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, f"Result: {line.title}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, line.detail, new_x="LMARGIN", new_y="NEXT")
    if case.feedback_agrees is not None:
        pdf.set_font("Helvetica", size=10)
        verdict = "agreed" if case.feedback_agrees else f"corrected to {DISPLAY_NAMES[case.corrected_label]}"
        pdf.cell(0, 6, f"Clinician review: {verdict} by {case.feedback_by}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_text_color(160, 60, 0)
    for caution in warnings_for(case.result, threshold):
        pdf.multi_cell(0, 5, f"Warning: {caution.text}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _probabilities(pdf: FPDF, case: Case) -> None:
    """One bar per class, in the fixed class order."""
    pdf.set_font("Helvetica", size=10)
    for name in CLASSES:
        probability = float(case.result["probabilities"][name])
        y = pdf.get_y()
        pdf.cell(40, 6, DISPLAY_NAMES[name])
        pdf.set_fill_color(220, 220, 220)
        pdf.rect(_MARGIN + 40, y + 1, _BAR_MM, 4, style="F")
        pdf.set_fill_color(40, 90, 170)
        pdf.rect(_MARGIN + 40, y + 1, _BAR_MM * probability, 4, style="F")
        pdf.set_x(_MARGIN + 45 + _BAR_MM)
        pdf.cell(0, 6, f"{probability:.1%}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _details(pdf: FPDF, case: Case) -> None:
    """Non-identifying DICOM tags (the store never holds patient identity)."""
    tags = case.result.get("dicom_tags") or {}
    if not tags:
        return
    pdf.set_font("Helvetica", size=9)
    pdf.multi_cell(0, 5, "DICOM: " + ", ".join(f"{k} {v}" for k, v in tags.items()),
                   new_x="LMARGIN", new_y="NEXT")


def _disclaimer(pdf: FPDF) -> None:
    pdf.set_y(-_MARGIN - 20)
    pdf.set_font("Helvetica", "I", 8)
    pdf.multi_cell(0, 4, DISCLAIMER)
