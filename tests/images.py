"""Images made on the spot, for tests that must run anywhere (no dataset needed)."""

import io

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def synthetic_slice(seed: int = 0, size: int = 224) -> Image.Image:
    """A grey, roughly brain-shaped blob: decodes like an MRI slice (not a real one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    head = ((x / 0.38) ** 2 + (y / 0.45) ** 2 < 1).astype(np.float32)
    texture = rng.normal(0.5, 0.15, (size, size)).clip(0, 1)
    return Image.fromarray((head * texture * 255).astype(np.uint8), mode="L")


def noise_image(seed: int = 0, size: int = 224) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def mr_dicom(image: Image.Image, **tags: str) -> bytes:
    """``image`` as a real (written and read back) MR DICOM file with ``tags``, a patient name and an ID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PatientName, dataset.PatientID = "MR", "Doe^Jane", "MRN-4711"
    for name, value in tags.items():
        setattr(dataset, name, value)
    pixels = np.asarray(image.convert("L"), dtype=np.uint16) * 16  # 12-bit, as scanners store MR
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
