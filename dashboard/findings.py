"""The words shown to clinicians for a result: class names, warnings and the disclaimer.

The page and the PDF report both read them from here so the two can never disagree; the class
names and the disclaimer come from the core, which the PACS worker's reports use too.
"""

from dataclasses import dataclass
from typing import Any

from neuroscan.classes import DISCLAIMER, DISPLAY_NAMES

__all__ = ["DISCLAIMER", "DISPLAY_NAMES", "Caution", "warnings_for"]


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
