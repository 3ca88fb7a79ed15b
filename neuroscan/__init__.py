"""NeuroScan core: the one place for the class list, model, preprocessing and weight files.

Training, the TorchServe handler and the dashboard all import from here and never from each
other; the ``.mar`` archive carries this package next to the handler.
"""

from neuroscan.classes import CLASSES, NUM_CLASSES, TUMOUR_CLASSES
from neuroscan.spec import DEFAULT_SPEC, ModelSpec

__all__ = ["CLASSES", "DEFAULT_SPEC", "NUM_CLASSES", "TUMOUR_CLASSES", "ModelSpec"]
