"""Does the heatmap point at the lesion? The quadrant of the head its peak lies in, against the lesion's site.

The dashboard and the PACS report show a Grad-CAM heatmap beside each answer, and a reader takes
its hot spot for where the tumour is. On the external volumes a by-eye site per patient
(``training/external_lesion_sites.csv``: anterior or posterior, the patient's right or left; no
segmentation) says where the lesion is, so for every tumour slice called a tumour this module
checks whether the heatmap's peak lies on the lesion's side of the head and in its quadrant
(chance: about a half and a quarter).
"""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from neuroscan.classes import NO_TUMOUR
from training.external_volumes import HEAD_LEVEL

SITES_FILE = Path(__file__).resolve().parent / "external_lesion_sites.csv"


def read_sites(path: Path = SITES_FILE) -> dict[str, str]:
    """Volume -> the lesion's quadrant, as :func:`peak_quadrant` names one ("anterior right")."""
    with path.open(newline="") as handle:
        return {row["volume"]: f"{row['anteroposterior']} {row['side']}" for row in csv.DictReader(handle)}


def peak_quadrant(cam: np.ndarray, pixels: np.ndarray) -> str | None:
    """The quadrant of the head's bounding box holding the heatmap's peak, in the radiological view (anterior
    up, the patient's right on the image's left); ``cam`` is upsampled to the model pixels (HWC uint8) as the
    served heatmap is scaled onto the image. None for a slice with no head pixels."""
    head = pixels[..., 0] > HEAD_LEVEL
    if not head.any():
        return None
    height, width = head.shape
    hot = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC))
    y, x = np.unravel_index(int(hot.argmax()), hot.shape)
    rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    anteroposterior = "anterior" if y < (rows[0] + rows[-1]) / 2 else "posterior"
    return f"{anteroposterior} {'right' if x < (cols[0] + cols[-1]) / 2 else 'left'}"


def heatmap_hits(slices: list, site: str | None) -> dict[str, int | None]:
    """Over the tumour slices called a tumour (:class:`training.external_metrics.SliceResult`): how many
    heatmaps peak on the lesion's side and in its quadrant (None where the volume has no site)."""
    if site is None:
        return {"heatmap_on_lesion_side": None, "heatmap_in_lesion_quadrant": None}
    hits = [s for s in slices if s.reading == "yes" and s.label != NO_TUMOUR and s.heatmap_quadrant]
    side = site.split()[1]
    return {"heatmap_on_lesion_side": sum(s.heatmap_quadrant.split()[1] == side for s in hits),
            "heatmap_in_lesion_quadrant": sum(s.heatmap_quadrant == site for s in hits)}
