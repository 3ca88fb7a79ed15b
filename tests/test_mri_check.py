"""The not-an-MRI check's parts on their own: pixel statistics and the neighbour distance.

How well the whole check separates MRIs from other pictures is measured through the handler in
``test_handler_unit.py``; these tests pin down the pieces it is built from.
"""

import numpy as np
import pytest
import torch

from neuroscan.imaging import decode_image
from neuroscan.mri_check import (
    DOMAIN_REASON,
    FEATURE_REASON,
    NeighbourDistance,
    PixelLimits,
    answer_reasons,
    dicom_reason,
    feature_flags,
    head_framed,
    pixel_reason,
    pixel_stats,
)
from neuroscan.preprocess import pixels
from neuroscan.weights import ModelMeta, load_weights, save_weights
from tests.images import (
    more_packaged_pictures,
    mr_dicom,
    non_mri_images,
    synthetic_slice,
)


def slice_like(colour: bool = False) -> np.ndarray:
    """224x224 HWC uint8: a bright disc on black (MRI-like), optionally tinted red."""
    yy, xx = np.mgrid[:224, :224]
    grey = np.where((yy - 112) ** 2 + (xx - 112) ** 2 < 80 ** 2, 180, 0).astype(np.uint8)
    pixels = np.dstack([grey] * 3)
    if colour:
        pixels[..., 0] = np.minimum(255, pixels[..., 0].astype(int) + 90)
    return pixels


def test_grey_shortcut_gives_the_general_formula():
    """Grey uploads skip the colour arithmetic; the numbers must be those of the general path."""
    grey = slice_like()
    colourfulness, contrast, border = pixel_stats(grey)
    sampled = grey[::2, ::2].astype(np.float32)
    assert colourfulness == 0.0
    assert contrast == float(sampled.mean(axis=2).std())
    assert border == 0.0  # the 8-pixel frame is background


def test_pixel_reasons():
    assert pixel_reason(slice_like()) is None
    assert "colour" in pixel_reason(slice_like(colour=True))
    assert "blank" in pixel_reason(np.full((224, 224, 3), 40, np.uint8))
    bright = slice_like()
    bright[bright == 0] = PixelLimits().max_border_brightness + 40
    assert "background" in pixel_reason(bright)


def test_a_head_on_black_is_framed_and_a_letterboxed_photo_or_a_star_field_is_not():
    assert head_framed(slice_like())
    photo = np.zeros((224, 224, 3), np.uint8)
    photo[40:184] = 120  # a landscape photo letterboxed onto the black canvas: its left and right edges show
    assert not head_framed(photo)
    close_crop = slice_like()
    close_crop[:, :12] = 90  # the head touches one side
    assert not head_framed(close_crop)
    yy, xx = np.mgrid[:224, :224]
    dots = ((yy // 2) % 2 == 0) & ((xx // 2) % 2 == 0) & (yy >= 16) & (yy < 208) & (xx >= 16) & (xx < 208)
    stars = np.dstack([np.where(dots, 200, 0).astype(np.uint8)] * 3)  # 25% bright, spread: no compact region
    assert not head_framed(stars)
    assert not head_framed(np.zeros((224, 224, 3), np.uint8))


def test_no_packaged_picture_but_the_head_phantom_is_framed_like_a_head():
    """A framed slice is never called a non-MRI by its features alone, so pictures must not be framed:
    none of the photo test's 38, and of 107 more pictures shipped with scikit-image only its head phantom."""
    pictures = {**non_mri_images(), **more_packaged_pictures()}
    framed = [name for name, body in pictures.items() if head_framed(pixels(decode_image(body).image))]
    assert len(pictures) == 38 + 107
    assert framed == ["phantom.png"]


def test_a_far_slice_framed_like_a_head_is_outside_the_domain_not_a_non_mri():
    head, photo = slice_like(), np.zeros((224, 224, 3), np.uint8)
    photo[40:184] = 120  # letterboxed: not framed
    assert answer_reasons(None, True, True, photo) == (FEATURE_REASON, FEATURE_REASON)
    assert answer_reasons(None, True, True, head) == (None, DOMAIN_REASON)
    assert answer_reasons("colour image", True, True, head) == ("colour image", "colour image")
    assert answer_reasons(None, False, False, head) == (None, None)



def test_dicom_reasons():
    assert dicom_reason({}) is None  # not a DICOM file: pixels and features decide
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "HEAD"}) is None
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "brain "}) is None
    assert dicom_reason({"Modality": "OT"}) is None  # a secondary capture may be an MRI screenshot
    assert dicom_reason({"Modality": "CR", "BodyPartExamined": "CHEST"}) == "DICOM modality CR: not an MR image"
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "KNEE"}) == "DICOM body part KNEE: not a brain scan"
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "SELLA"}) is None  # a pituitary MRI


@pytest.mark.parametrize("description", [
    "T2 AX BRAIN", "t2_tse_tra_brain", "AX FLAIR", "MRI HEAD W/WO", "SAG T1 SELLA", "COR T2 PITUITARY",
    "IAC 3D CISS", "ORBITS FS", "NEURO", "DWI", "SAG T2 BRAIN C-SPINE", "WHIPLASH PROTOCOL", "T1 RADIAL VIBE",
    "HANDEDNESS fMRI", "",
])
def test_descriptions_that_do_not_rule_out_a_brain(description):
    for tag in ("SeriesDescription", "ProtocolName", "StudyDescription"):
        assert dicom_reason({"Modality": "MR", tag: description}) is None, (tag, description)


@pytest.mark.parametrize("description, word", [
    ("SAG T1 C-SPINE", "SPINE"), ("t2_tse_sag_LSPINE", "LSPINE"), ("NEURO^C-SPINE", "SPINE"),
    ("COR PD FS KNEE", "KNEE"), ("t2_tse_KNEE3D", "KNEE"), ("AX T1 SHOULDER", "SHOULDER"), ("HIP FEMORAL HEAD", "HIP"),
    ("MR CHEST", "CHEST"), ("LIVER DYN", "LIVER"), ("PELVIS PROSTATE", "PELVIS"), ("ANKLE", "ANKLE"),
    ("WRIST", "WRIST"), ("L ELBOW", "ELBOW"), ("HAND", "HAND"), ("FOOT", "FOOT"), ("BREAST DCE", "BREAST"),
    ("CARDIAC CINE SA", "CARDIAC"), ("THORACIC", "THORACIC"), ("abdomen^liver", "ABDOMEN"),
])
def test_descriptions_that_name_another_body_part(description, word):
    assert dicom_reason({"Modality": "MR", "SeriesDescription": description}) == (
        f"DICOM SeriesDescription names {word}: not a brain scan")


def test_the_most_specific_description_decides():
    study = {"Modality": "MR", "StudyDescription": "MRI BRAIN AND C-SPINE"}
    assert dicom_reason(study) is None  # names the brain: the study as a whole may be one
    assert dicom_reason(study | {"SeriesDescription": "AX T2 FLAIR"}) is None  # names no part: the study decides
    assert dicom_reason(study | {"SeriesDescription": "SAG T2 C-SPINE"}) == (
        "DICOM SeriesDescription names SPINE: not a brain scan")
    assert dicom_reason({"Modality": "MR", "StudyDescription": "KNEE", "ProtocolName": "T2 AX BRAIN"}) is None
    assert dicom_reason({"Modality": "MR", "BodyPartExamined": "HEAD", "ProtocolName": "t1_vibe_tra_liver"}) == (
        "DICOM ProtocolName names LIVER: not a brain scan")


def test_decoded_descriptions_reach_the_check_but_are_never_returned():
    """The check reads StudyDescription and ProtocolName; what is returned and shown stays the whitelist,
    and the reason quotes only the body-part word, not the free text (which may hold a name)."""
    decoded = decode_image(mr_dicom(synthetic_slice(32), StudyDescription="Doe Jane KNEE", ProtocolName="t2 Doe"))
    assert decoded.description_tags == {"StudyDescription": "Doe Jane KNEE", "ProtocolName": "t2 Doe"}
    assert "StudyDescription" not in decoded.dicom_tags and "ProtocolName" not in decoded.dicom_tags
    reason = dicom_reason(decoded.header)
    assert reason == "DICOM StudyDescription names KNEE: not a brain scan"
    assert "Doe" not in reason and "Doe" not in str(decoded.dicom_tags) and "4711" not in str(decoded.header)
    assert dicom_reason(decode_image(mr_dicom(synthetic_slice(32), SeriesDescription="T2 AX BRAIN", StudyDescription="KNEE")).header) is None

def clusters(n: int, generator: torch.Generator, centres: torch.Tensor) -> torch.Tensor:
    """Positive 'pooled features' scattered around a few centres, like the four classes'."""
    picks = torch.randint(len(centres), (n,), generator=generator)
    return (centres[picks] + 0.3 * torch.randn(n, centres.shape[1], generator=generator)).relu()


def test_neighbour_distance_separates_new_kinds_of_features(tmp_path):
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(4, 256, generator=generator) * 3
    detector = NeighbourDistance.fit(clusters(800, generator, centres), k=5, dims=32, quantile=0.99)
    held_out = feature_flags(detector, clusters(400, generator, centres))[0].float().mean()
    strangers = feature_flags(detector, torch.rand(50, 256, generator=generator) * 3)[0].float().mean()
    assert held_out <= 0.03 and strangers == 1.0

    # what the handler loads is what was fitted
    path = save_weights(tmp_path / "m.safetensors", {"w": torch.zeros(1)}, ModelMeta(version="t"),
                        detector.to_extras())
    loaded = NeighbourDistance.from_extras(load_weights(path).extras)
    probe = clusters(20, generator, centres)
    assert torch.equal(loaded.score(probe), detector.score(probe))
    assert NeighbourDistance.from_extras({}) is None
