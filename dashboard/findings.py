"""The words shown to clinicians for a result: class names, warnings and the disclaimer.

The page and the PDF report both read them from here so the two can never disagree.
"""

from dataclasses import dataclass
from typing import Any

from neuroscan.classes import CLASSES

DISPLAY_NAMES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary tumour",
}
assert set(DISPLAY_NAMES) == set(CLASSES), "every class needs a display name"

DISCLAIMER = (
    "NeuroScan is a decision-support tool, not a diagnosis. Its output must be reviewed by a qualified "
    "clinician together with the full imaging study and clinical context. Not for use as the sole basis "
    "of any clinical decision."
)


@dataclass(frozen=True)
class Caution:
    """One plain-language caution about a result; ``kind`` names it for styling and tests."""

    kind: str
    text: str


def warnings_for(result: dict[str, Any], low_confidence_threshold: float) -> list[Caution]:
    """The cautions a clinician must see next to ``result``, most serious first."""
    found = []
    if not result.get("is_mri", True):
        reason = result.get("mri_reason")
        found.append(Caution("not_mri", "This image does not look like a brain MRI"
                             + (f" ({reason})" if reason else "") + ": the result is not meaningful."))
    if result["confidence"] < low_confidence_threshold:
        found.append(Caution("low_confidence", f"Low confidence ({result['confidence']:.0%}, below "
                             f"{low_confidence_threshold:.0%}): treat this result with caution."))
    if result.get("tumour"):
        found.append(Caution("tumour", f"Tumour found: {DISPLAY_NAMES[result['label']]}. Review by a "
                             "specialist is advised."))
    return found
