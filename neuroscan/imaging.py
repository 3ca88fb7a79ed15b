"""Decode uploaded bytes into an image, trusting magic bytes rather than declared types.

Both the handler (to classify) and the dashboard (to preview and show DICOM tags) need the
same answer to "what is this file?", so the sniffing and DICOM rendering live here.
"""

import io
import logging
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow decodes each of these; DICOM goes through pydicom. DICOM comes first: its 128-byte
# preamble is free-form and may itself hold another format's header (e.g. TIFF).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (128, b"DICM", "dicom"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
)
SUPPORTED_FORMATS: tuple[str, ...] = ("jpeg", "png", "bmp", "tiff", "webp", "dicom")
# Guards Pillow against decompression bombs: far above any MRI slice.
MAX_PIXELS = 64_000_000
# DICOM attributes shown to clinicians; patient identity is deliberately absent.
DICOM_TAGS: tuple[str, ...] = (
    "Modality",
    "BodyPartExamined",
    "SeriesDescription",
    "SeriesNumber",
    "InstanceNumber",
    "SliceLocation",
    "SliceThickness",
    "Rows",
    "Columns",
)
# Free-text descriptions read only for the not-MRI check (neuroscan.mri_check): never returned,
# shown or logged, because a site may type anything into them, a name included.
DESCRIPTION_TAGS: tuple[str, ...] = ("StudyDescription", "ProtocolName")

# pydicom logs every decoder plugin's failure at ERROR with a traceback; a file none can decode is
# the uploader's problem, answered with a 422 by _decode_dicom, not an error for logs and Sentry.
# Set once here (naming a logger imports nothing): setLevel clears every logger's level cache.
logging.getLogger("pydicom.pixels.decoders").setLevel(logging.CRITICAL)


class ImageDecodeError(ValueError):
    """The bytes are not a usable image; ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class DecodedImage:
    """A decoded upload: the picture, what it was, and (for DICOM) its safe tags and check-only descriptions."""

    image: Image.Image
    format: str
    dicom_tags: dict[str, str] = field(default_factory=dict)
    description_tags: dict[str, str] = field(default_factory=dict)

    @property
    def header(self) -> dict[str, str]:
        """Every tag the not-MRI header check reads (:func:`neuroscan.mri_check.dicom_reason`)."""
        return self.dicom_tags | self.description_tags


def sniff_format(data: bytes) -> str | None:
    """The format named by the file's magic bytes, or ``None`` if unsupported."""
    for offset, magic, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def decode_image(data: bytes) -> DecodedImage:
    """Decode ``data`` fully (so truncation is caught here) or raise :class:`ImageDecodeError`."""
    if not data:
        raise ImageDecodeError("empty_input", "The request body is empty: send an image file.")
    kind = sniff_format(data)
    if kind is None:
        raise ImageDecodeError(
            "unsupported_type",
            "Unsupported file type: send JPEG, PNG, BMP, TIFF, WebP or DICOM.",
        )
    if kind == "dicom":
        return _decode_dicom(data)
    return DecodedImage(image=_decode_pillow(data, kind), format=kind)


def _decode_pillow(data: bytes, kind: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixel_count(image.width * image.height)
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise _too_large(_bomb_pixels(exc)) from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(
            "corrupt_image", f"The {kind.upper()} file is corrupt or truncated and cannot be read."
        ) from exc
    return image


def _check_pixel_count(count: int) -> None:
    """Refuse a picture with more pixels than :data:`MAX_PIXELS` before decoding it."""
    if count > MAX_PIXELS:
        raise _too_large(count)


def _too_large(count: int | None) -> ImageDecodeError:
    size = f"{count:,} pixels" if count else "more pixels than Pillow will decode"
    return ImageDecodeError("image_too_large", f"The image has {size}; at most {MAX_PIXELS:,} are accepted.")


def _bomb_pixels(exc: Exception) -> int | None:
    """The pixel count Pillow names in its decompression-bomb message (it checks before we can)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return int(match.group(1)) if match else None


def _decode_dicom(data: bytes) -> DecodedImage:
    import pydicom  # imported lazily: only DICOM uploads pay for it

    dataset = None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        _check_pixel_count(int(dataset.get("Rows") or 0) * int(dataset.get("Columns") or 0))
        image = _dicom_image(dataset, dataset.pixel_array)
    except ImageDecodeError:
        raise
    except Exception as exc:  # pydicom and numpy raise many unrelated types for bad or odd files
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        detail = f" (or its {syntax.name} compression cannot be decoded here)" if syntax and syntax.is_compressed else ""
        raise ImageDecodeError("corrupt_image", f"The DICOM file is corrupt or has no readable pixel data{detail}.") from exc
    return DecodedImage(image=image, format="dicom", dicom_tags=dicom_tags(dataset),
                        description_tags=dicom_tags(dataset, DESCRIPTION_TAGS))


def _dicom_image(dataset, pixels: np.ndarray) -> Image.Image:
    """The displayed picture: the middle frame of a multi-frame file, colour kept as RGB (so the
    not-MRI check sees an ultrasound's colour), greyscale windowed to 8 bits."""
    if _frames(dataset) > 1:
        pixels = pixels[len(pixels) // 2]
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, dataset)
    if pixels.ndim == 3:  # pydicom hands colour over as RGB whatever the stored YBR variant
        top = float(2 ** int(getattr(dataset, "BitsStored", 8) or 8) - 1) if pixels.dtype != np.uint8 else 255.0
        rgb = np.clip(pixels[..., :3].astype(np.float32) * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(rgb, mode="RGB")
    return Image.fromarray(_dicom_to_uint8(dataset, pixels), mode="L")


def _frames(dataset) -> int:
    """NumberOfFrames, 1 when absent or unreadable (some files store it with a broken VR)."""
    try:
        return int(getattr(dataset, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _dicom_to_uint8(dataset, pixels: np.ndarray) -> np.ndarray:
    """Apply rescale slope/intercept and the stored window (or min/max) to get 8-bit grey."""
    values = pixels.astype(np.float32) * float(getattr(dataset, "RescaleSlope", 1) or 1)
    values += float(getattr(dataset, "RescaleIntercept", 0) or 0)
    low, high = _window(dataset, values)
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.round().astype(np.uint8)


def _window(dataset, values: np.ndarray) -> tuple[float, float]:
    """The display window stored in the file (first of several), else the full value range."""
    center, width = _first(dataset.get("WindowCenter")), _first(dataset.get("WindowWidth"))
    if center is not None and width is not None and width > 1:
        return center - width / 2, center + width / 2
    return float(values.min()), float(values.max())


def _first(value) -> float | None:
    """DICOM window tags hold one number or a list of presets; take the first."""
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    return None if value is None else float(value)


def dicom_tags(dataset, names: tuple[str, ...] = DICOM_TAGS) -> dict[str, str]:
    """The whitelisted tags (``names``) present in ``dataset``, as strings; patient identity is never read."""
    return {tag: str(dataset.get(tag)) for tag in names if dataset.get(tag) not in (None, "")}
