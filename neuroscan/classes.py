"""The label set, and the words every report uses for it.

Its order is the order of the model's logits everywhere: never reorder it.
"""

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
NUM_CLASSES: int = len(CLASSES)
NO_TUMOUR: str = "notumor"
TUMOUR_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c != NO_TUMOUR)


def class_index(name: str) -> int:
    """Index of ``name`` in :data:`CLASSES`; raises ``ValueError`` for an unknown class."""
    return CLASSES.index(name)


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
