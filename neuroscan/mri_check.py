"""Is this upload a brain MRI slice at all? The DICOM header, cheap pixel checks, then a feature distance.

A classifier always answers with one of its four classes, even for a cat photo, so serving
needs a separate "not an MRI" signal:

0. a DICOM file says what it is: another modality (CT, X-ray, ultrasound...) or a body part
   other than the head, in BodyPartExamined or named in a series, protocol or study description
   ("SAG T1 C-SPINE"), is not a brain MRI, however brain-like its pixels look (a chest CT
   slice's features lie among the training slices');
1. pixel statistics: MRI slices are grey (channels agree), not blank, on a dark background;
2. how far the classifier's pooled features lie from the training slices' features: the cosine
   distance to the k-th nearest training slice (deep nearest neighbours, Sun et al., ICML 2022),
   in a 128-dimensional PCA projection so the reference bank stays small, thresholded at a high
   quantile of the training slices' own (leave-self-out) distances; a slice framed like a head
   on a scanner's dark background (:func:`head_framed`) is not ruled out by that distance alone,
   only marked outside the validated domain: grey photos and brain MRI unlike the training slices
   (a large metastasis, another sequence) lie at the same distances, their framing tells them apart.

Measured against a global Mahalanobis distance and a class-conditional one on the same features,
the neighbour distance was the only one that flagged a grey colour wheel and a grey retina photo
at a <= 1% false-alarm rate on validation slices.
"""

import re
from dataclasses import dataclass

import numpy as np
import torch

# DICOM BodyPartExamined terms under which a brain is in the picture: PS3.16 Annex L's head terms,
# and the head regions a site may name instead (a sella, IAC or orbit MRI shows brain too).
BRAIN_BODY_PARTS = frozenset({"BRAIN", "HEAD", "SKULL", "HEADNECK", "SELLA", "PITUITARY", "IAC", "ORBIT"})
# Modalities that do not rule out a brain MRI: MR itself, and "other" and secondary captures,
# which carry any picture (a screenshot of an MRI included): the pixel and feature checks judge those.
MODALITIES_NOT_RULED_OUT = frozenset({"MR", "OT", "SC"})
# The reason given when only the feature distance (NeighbourDistance) rules a slice out.
FEATURE_REASON = "image features are far from brain MRI slices"
# The reason a brain MRI slice is answered ``in_domain: false`` (the same distance, a nearer limit).
DOMAIN_REASON = ("the slice is unlike the MRI the model was validated on (another scanner, sequence or "
                 "framing): its answer and confidence are not reliable")
# Free-text tags that often name the body part when BodyPartExamined is empty, most specific
# first: a series of a combined "BRAIN AND C-SPINE" study is judged by its own description.
DESCRIPTION_TAGS = ("SeriesDescription", "ProtocolName", "StudyDescription")
# Whole words that put a description in the head. "NEURO" is not one: departments file spine
# studies under it ("NEURO^C-SPINE"), so it neither passes nor flags a description.
HEAD_WORDS = frozenset({
    "HEAD", "BRAIN", "BRAINSTEM", "SKULL", "CRANIAL", "INTRACRANIAL", "CEREBRAL", "CEREBELLUM", "SELLA",
    "PITUITARY", "HYPOPHYSIS", "ORBIT", "ORBITS", "IAC", "IACS", "HEADNECK",
})
# Whole words that name another body part. Words, not substrings: "HIP" is not in "WHIPLASH".
OTHER_BODY_PART_WORDS = frozenset({
    "SHOULDER", "SHOULDERS", "KNEE", "KNEES", "SPINE", "SPINAL", "CSPINE", "TSPINE", "LSPINE", "CERVICAL",
    "THORACIC", "LUMBAR", "SACRUM", "SACRAL", "COCCYX", "NECK", "CHEST", "THORAX", "LUNG", "LUNGS", "BREAST",
    "BREASTS", "CARDIAC", "HEART", "AORTA", "ABDOMEN", "ABDOMINAL", "LIVER", "PANCREAS", "PANCREATIC",
    "KIDNEY", "KIDNEYS", "RENAL", "SPLEEN", "BOWEL", "ENTEROGRAPHY", "MRCP", "PELVIS", "PELVIC", "PROSTATE",
    "UTERUS", "BLADDER", "RECTUM", "HIP", "HIPS", "FEMUR", "FEMORAL", "THIGH", "LEG", "LEGS", "TIBIA",
    "CALF", "ANKLE", "ANKLES", "FOOT", "FEET", "TOE", "TOES", "ARM", "ARMS", "HUMERUS", "HUMERAL", "FOREARM",
    "ELBOW", "ELBOWS", "WRIST", "WRISTS", "HAND", "HANDS", "FINGER", "FINGERS", "EXTREMITY",
})
# "HEAD" after these is a bone's or an organ's head, not the patient's ("FEMORAL HEAD"). "RADIAL" is no
# body-part word itself: it also names a k-space trajectory ("T1 RADIAL VIBE").
NOT_THE_HEAD_BEFORE = frozenset({"FEMORAL", "HUMERAL", "RADIAL", "FIBULAR", "PANCREAS", "PANCREATIC"})


def dicom_reason(tags: dict[str, str]) -> str | None:
    """Why a DICOM header rules out a brain MRI, or ``None``.

    ``tags`` are :attr:`neuroscan.imaging.DecodedImage.dicom_tags` plus its ``description_tags``;
    the reason quotes only this module's own words (a modality, a body-part term or word), never
    the free text around them, so it is safe to return and log.
    """
    modality = tags.get("Modality", "").strip().upper()
    if modality and modality not in MODALITIES_NOT_RULED_OUT:
        return f"DICOM modality {modality}: not an MR image"
    body_part = tags.get("BodyPartExamined", "").strip().upper()
    if body_part and body_part not in BRAIN_BODY_PARTS:
        return f"DICOM body part {body_part}: not a brain scan"
    return description_reason(tags)


def description_reason(tags: dict[str, str]) -> str | None:
    """The most specific description that names a body part decides: the head passes, another part flags."""
    for tag in DESCRIPTION_TAGS:
        words = re.findall(r"[A-Z]+", tags.get(tag, "").upper())  # "C-SPINE", "T2_AX_KNEE3D" split too
        if any(word in HEAD_WORDS and (word != "HEAD" or before not in NOT_THE_HEAD_BEFORE)
               for before, word in zip(["", *words], words)):
            return None
        other = next((word for word in words if word in OTHER_BODY_PART_WORDS), None)
        if other:
            return f"DICOM {tag} names {other}: not a brain scan"
    return None


@dataclass(frozen=True)
class PixelLimits:
    """Thresholds on 8-bit RGB statistics (measured on the training images, with margin)."""

    max_colourfulness: float = 12.0
    min_contrast: float = 8.0
    # MRI slices sit on a dark background: the mean of an 8-pixel border frame (at 112 px) is
    # below 64 for 99% of validation slices and above 100 for most photos, documents and scans.
    max_border_brightness: float = 80.0


def pixel_stats(pixels: np.ndarray, frame: int = 8) -> tuple[float, float, float]:
    """(colourfulness, contrast, border): mean |channel - grey|, grey std, mean grey of the frame.

    ``pixels`` are the model's HWC uint8 input pixels (from :func:`neuroscan.preprocess.pixels`);
    every second pixel is enough for these statistics, so they are taken at 112 px. Most uploads
    are grey (all channels equal): that case skips the float colour arithmetic, same numbers, 3x faster.
    """
    sampled = pixels[::2, ::2]
    if (sampled[..., 0] == sampled[..., 1]).all() and (sampled[..., 1] == sampled[..., 2]).all():
        grey, colourfulness = sampled[..., 0].astype(np.float32), 0.0
    else:
        array = sampled.astype(np.float32)
        grey = array.mean(axis=2)
        colourfulness = float(np.abs(array - grey[..., None]).mean())
    border = np.concatenate([side.ravel() for side in frame_sides(grey, frame)])
    return colourfulness, float(grey.std()), float(border.mean())


def frame_sides(grey: np.ndarray, frame: int = 8) -> tuple[np.ndarray, ...]:
    """The top, bottom, left and right ``frame``-pixel strips of a 2D image."""
    return grey[:frame], grey[-frame:], grey[:, :frame], grey[:, -frame:]


@dataclass(frozen=True)
class HeadFraming:
    """A head slice as a scanner exports it: background on every side, one compact bright region.

    Measured on the model pixels (at 112 px, as :func:`pixel_stats`): 29% of the training slices
    are framed so (the rest are cropped close to the head or sit on a noisy background), and 0 of
    the 38 non-MRI pictures of the photo test; a photo letterboxed onto the black canvas still
    shows its own edges on two sides. The fill limit is below that of all but one of the 1,315
    framed training slices (0.38, then 0.47); a star field on black fills 0.11 of its extent.
    """

    background: float = 25.0  # 8-bit grey at or below which a pixel is background (as for a brain slice)
    min_dark_side: float = 0.9  # share of background pixels in each side's 8-pixel frame
    min_bright: float = 0.10  # share of the image above the background level
    min_fill: float = 0.4  # share of the bright pixels' bounding box they fill


def head_framed(pixels: np.ndarray, framing: HeadFraming = HeadFraming(), frame: int = 8) -> bool:
    """Whether the pixels (HWC uint8) are framed like a head slice on a dark background (first channel)."""
    grey = pixels[::2, ::2, 0]
    if min(float((side <= framing.background).mean()) for side in frame_sides(grey, frame)) < framing.min_dark_side:
        return False
    bright = grey > framing.background
    if bright.mean() < framing.min_bright:
        return False
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    extent = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return bright.sum() >= framing.min_fill * extent


def pixel_reason(pixels: np.ndarray, limits: PixelLimits = PixelLimits()) -> str | None:
    """Why the pixels (HWC uint8, as :func:`pixel_stats` takes them) rule out an MRI slice, or ``None``."""
    colourfulness, contrast, border = pixel_stats(pixels)
    if colourfulness > limits.max_colourfulness:
        return "colour image: MRI slices are greyscale"
    if contrast < limits.min_contrast:
        return "blank or nearly uniform image"
    if border > limits.max_border_brightness:
        return "bright background: MRI slices sit on a dark background"
    return None


@dataclass
class NeighbourDistance:
    """Cosine distance of pooled features to their k-th nearest training slice, and two limits on it.

    ``threshold`` is far: past it the picture is not a brain MRI slice at all (``is_mri``).
    ``domain_threshold`` is nearer: past it the slice is a brain MRI unlike the training slices
    (another scanner, sequence or framing), where the classifier's confidence has not been
    validated (``in_domain``). Files from before 2.0 have no domain limit: there it is the far one.
    """

    mean: torch.Tensor  # (D,) mean of the unit-length training features
    components: torch.Tensor  # (P, D) orthonormal PCA rows
    bank: torch.Tensor  # (N, P) unit-length projected training features
    k: torch.Tensor  # () which neighbour counts (k-th nearest; robust to a few near-duplicates)
    threshold: torch.Tensor  # () distance above which features are not those of a brain MRI
    domain_threshold: torch.Tensor  # () distance above which a brain MRI is outside the validated domain

    @classmethod
    def fit(cls, features: torch.Tensor, k: int = 10, dims: int = 128, quantile: float = 0.998,
            domain_quantile: float = 0.95) -> "NeighbourDistance":
        """Fit on training features; the limits are quantiles of their leave-self-out distances."""
        unit = torch.nn.functional.normalize(features.float(), dim=1)
        mean = unit.mean(0)
        _, _, vh = torch.linalg.svd(unit - mean, full_matrices=False)
        fitted = cls(mean, vh[:dims].contiguous(), torch.empty(0), torch.tensor(k), torch.tensor(0.0), torch.tensor(0.0))
        fitted.bank = fitted.project(features)
        similarity = fitted.bank @ fitted.bank.T
        similarity.fill_diagonal_(-2.0)  # a slice is not its own neighbour
        own = 1 - similarity.topk(k, dim=1).values[:, -1]
        fitted.threshold = torch.quantile(own, quantile)
        fitted.domain_threshold = torch.quantile(own, domain_quantile)
        return fitted

    def project(self, features: torch.Tensor) -> torch.Tensor:
        unit = torch.nn.functional.normalize(features.float(), dim=1)
        return torch.nn.functional.normalize((unit - self.mean) @ self.components.T, dim=1)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Per row: 1 - cosine similarity to the k-th nearest training slice."""
        similarity = self.project(features) @ self.bank.T
        return 1 - similarity.topk(int(self.k), dim=1).values[:, -1]

    def outside_domain(self, scores: torch.Tensor) -> torch.Tensor:
        """Per row of :meth:`score`: beyond the validated domain (rows past ``threshold`` are too)."""
        return scores > torch.minimum(self.domain_threshold, self.threshold)

    def to_extras(self) -> dict[str, torch.Tensor]:
        """Tensors to store in the weight file (under ``extra.knn.*``)."""
        return {f"knn.{name}": getattr(self, name) for name in _NEIGHBOUR_FIELDS}

    @classmethod
    def from_extras(cls, extras: dict[str, torch.Tensor]) -> "NeighbourDistance | None":
        """Rebuild from a weight file's extras; ``None`` if the file has none."""
        if not all(f"knn.{name}" in extras for name in _NEIGHBOUR_FIELDS[:-1]):
            return None
        fields = [extras[f"knn.{name}"] for name in _NEIGHBOUR_FIELDS[:-1]]
        return cls(*fields, extras.get("knn.domain_threshold", fields[-1]))


def feature_flags(check: NeighbourDistance | None, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(not a brain MRI, outside the validated domain) per row, from one neighbour search.

    All ``False`` for a weight file without a fitted check: then only the header and pixels decide.
    """
    if check is None:
        none = torch.zeros(len(features), dtype=torch.bool)
        return none, none
    scores = check.score(features)
    return scores > check.threshold, check.outside_domain(scores)


def answer_reasons(input_reason: str | None, outlier: bool, outside: bool,
                   pixels: np.ndarray) -> tuple[str | None, str | None]:
    """(``mri_reason``, ``domain_reason``) of one answer: the header or pixel reason first, then the
    feature distance's, unless the ``pixels`` (HWC uint8) are framed like a head (:func:`head_framed`,
    looked at only for a far slice): then the distance only puts it outside the domain. A picture
    that is not a brain MRI is outside the domain for the same reason."""
    reason = input_reason or (FEATURE_REASON if outlier and not head_framed(pixels) else None)
    return reason, reason or (DOMAIN_REASON if outside else None)


_NEIGHBOUR_FIELDS = ("mean", "components", "bank", "k", "threshold", "domain_threshold")
