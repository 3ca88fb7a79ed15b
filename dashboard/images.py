"""Image handling for the pages and the report: the model's view, thumbnails, heatmap overlays.

The Grad-CAM heatmap is computed on the model's input, so it is drawn over the same RGB resize
the core preprocessing makes (``neuroscan.preprocess``), never over a differently-scaled copy.
"""

import base64
import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image

from neuroscan.imaging import decode_image
from neuroscan.preprocess import resize, to_rgb


@dataclass(frozen=True)
class PreparedImage:
    """An upload checked and reduced to what the dashboard shows and keeps."""

    sha256: str
    view_png: bytes
    thumbnail_png: bytes
    dicom_tags: dict[str, str] = field(default_factory=dict)


def prepare(data: bytes, thumbnail_px: int) -> PreparedImage:
    """Decode ``data`` (raises ``ImageDecodeError`` with a readable message) and make the previews."""
    decoded = decode_image(data)
    view = resize(to_rgb(decoded.image))
    thumbnail = view.copy()
    thumbnail.thumbnail((thumbnail_px, thumbnail_px))
    return PreparedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        view_png=png_bytes(view),
        thumbnail_png=png_bytes(thumbnail),
        dicom_tags=decoded.dicom_tags,
    )


def png_bytes(image: Image.Image) -> bytes:
    """Encode ``image`` as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """Inline a PNG for ``ui.image`` so no extra route (and no extra auth check) is needed."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def overlay(view_png: bytes, heatmap_png: bytes) -> Image.Image:
    """The heatmap (whose alpha already follows the activation) blended over the model's view."""
    view = Image.open(io.BytesIO(view_png)).convert("RGBA")
    heatmap = Image.open(io.BytesIO(heatmap_png)).convert("RGBA").resize(view.size)
    return Image.alpha_composite(view, heatmap).convert("RGB")
