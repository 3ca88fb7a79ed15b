"""DICOM pixels against known answers: slices built here with known stored values, rescale and window.

Comparing one decoded file with another (as the compressed-DICOM test does) cannot catch a rescale or
window that is wrong in every file alike; here each 8-bit value is worked out by hand. The window
is applied as ``(value - (center - width/2)) / width * 255``, clipped (``neuroscan.imaging``).
"""

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from neuroscan.imaging import decode_image

STORED = np.array([[0, 51, 102], [255, 300, 1000]], dtype=np.uint16)
# stored x 2 - 100 = [[-100, 2, 104], [410, 500, 1900]]; window 255 +/- 255 -> 0..510, 0.5 grey per unit
WINDOWED = np.array([[0, 1, 52], [205, 250, 255]], dtype=np.uint8)


def dicom(stored: np.ndarray, signed: bool = False, **attributes) -> bytes:
    """A minimal MR DICOM file (explicit little endian, 16 bits) holding ``stored`` (frames first if 3-D)."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def grey(data: bytes) -> np.ndarray:
    decoded = decode_image(data)
    assert decoded.format == "dicom" and decoded.image.mode == "L"
    return np.asarray(decoded.image)


def test_rescale_slope_intercept_and_stored_window():
    data = dicom(STORED, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=255, WindowWidth=510)
    np.testing.assert_array_equal(grey(data), WINDOWED)


def test_first_of_several_window_presets_is_used():
    data = dicom(STORED, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=[255, 40], WindowWidth=[510, 80])
    np.testing.assert_array_equal(grey(data), WINDOWED)


def test_monochrome1_is_inverted():
    data = dicom(STORED, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=255, WindowWidth=510,
                 PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(grey(data), 255 - WINDOWED)


def test_without_a_window_the_value_range_is_stretched():
    """Signed stored values, intercept -1024: 1024..1534 -> 0..510 -> 0..255."""
    stored = np.array([[1024, 1126], [1534, 1330]], dtype=np.int16)
    np.testing.assert_array_equal(grey(dicom(stored, signed=True, RescaleIntercept=-1024)), [[0, 51], [255, 153]])


@pytest.mark.parametrize("frames", [3, 5])
def test_multi_frame_file_shows_its_middle_frame(frames):
    """Frame i holds the constant 102 * i (window 0..510): the middle frame's value identifies it."""
    stored = np.stack([np.full((2, 3), 102 * i, dtype=np.uint16) for i in range(frames)])
    answer = grey(dicom(stored, WindowCenter=255, WindowWidth=510))
    np.testing.assert_array_equal(answer, np.full((2, 3), 51 * (frames // 2)))
