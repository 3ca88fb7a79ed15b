"""The words shown to clinicians for a result: class names, warnings and the disclaimer.

The page and the PDF report both read them from here so the two can never disagree; the class
names and the disclaimer come from the core, which the PACS worker's reports use too.
"""

from dataclasses import dataclass
from typing import Any

from neuroscan.classes import DISCLAIMER, DISPLAY_NAMES

__all__ = ["DISCLAIMER", "DISPLAY_NAMES", "Caution", "Headline", "headline", "is_reliable", "warnings_for"]


@dataclass(frozen=True)
class Caution:
    """One plain-language caution about a result; ``kind`` names it for styling and tests."""

    kind: str
    text: str


@dataclass(frozen=True)
class Headline:
    """The result card's large line and the line under it."""

    title: str
    detail: str


def is_reliable(result: dict[str, Any]) -> bool:
    """A brain MRI inside the validated domain (answers from before 2.0 carry no ``in_domain``)."""
    return bool(result.get("is_mri", True) and result.get("in_domain", True))


def headline(result: dict[str, Any]) -> Headline:
    """Class and confidence in large type, or, outside the validated domain, that there is no result.

    A 0.99 on a scan the model was never validated on reads like a diagnosis; there the class is
    named only as the model's unvalidated guess, in small type.
    """
    guess = f"{DISPLAY_NAMES[result['label']]} ({result['confidence']:.0%})"
    if not result.get("is_mri", True):
        return Headline("Not a brain MRI", f"No result. The model's unvalidated guess would be {guess}.")
    if not result.get("in_domain", True):
        return Headline("No reliable result",
                        f"Outside the validated domain. The model's unvalidated guess would be {guess}.")
    return Headline(DISPLAY_NAMES[result["label"]], f"Calibrated confidence {result['confidence']:.1%}")


def warnings_for(result: dict[str, Any], low_confidence_threshold: float) -> list[Caution]:
    """The cautions a clinician must see next to ``result``, most serious first.

    An unreliable result (not a brain MRI, or outside the validated domain) gets only the caution
    that says so: low confidence or "tumour found" would treat its class as a finding.
    """
    if not result.get("is_mri", True):
        reason = result.get("mri_reason")
        return [Caution("not_mri", "This image does not look like a brain MRI"
                        + (f" ({reason})" if reason else "") + ": the result is not meaningful.")]
    if not result.get("in_domain", True):
        return [Caution("out_of_domain", "This slice is unlike the MRI the model was validated on (another "
                        "scanner, sequence or framing). Its class and confidence are not reliable: do not use "
                        "them; read the images yourself.")]
    found = []
    if result["confidence"] < low_confidence_threshold:
        found.append(Caution("low_confidence", f"Low confidence ({result['confidence']:.0%}, below "
                             f"{low_confidence_threshold:.0%}): treat this result with caution."))
    if result.get("tumour"):
        found.append(Caution("tumour", f"Tumour found: {DISPLAY_NAMES[result['label']]}. Review by a "
                             "specialist is advised."))
    return found
