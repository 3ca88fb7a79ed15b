"""The label set. Its order is the order of the model's logits everywhere: never reorder it."""

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
NUM_CLASSES: int = len(CLASSES)
NO_TUMOUR: str = "notumor"
TUMOUR_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c != NO_TUMOUR)


def class_index(name: str) -> int:
    """Index of ``name`` in :data:`CLASSES`; raises ``ValueError`` for an unknown class."""
    return CLASSES.index(name)
