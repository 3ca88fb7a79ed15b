"""One request of a batch as it moves through the handler (TorchServe wants one class per entry module)."""

from dataclasses import dataclass, field

import numpy as np

from neuroscan.imaging import DecodedImage, ImageDecodeError


@dataclass
class Item:
    """One request of a batch as it moves through the handler."""

    index: int
    explain: bool = False
    request_id: str | None = None
    decoded: DecodedImage | None = None
    pixels: np.ndarray | None = None  # HWC uint8 model input, normalised per batch
    input_reason: str | None = None  # why the header or pixels alone rule out a brain MRI
    error: ImageDecodeError | None = None
    result: dict = field(default_factory=dict)
