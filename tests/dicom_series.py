"""MR series made from the shared training slices, as a scanner would send them (for PACS tests).

Each slice becomes an MR Image Storage instance with a position along the axial normal, so the
worker's ordering has something to order; the instance numbers can be shuffled to prove it.
"""

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def study_attributes(accession: str = "ACC0001", description: str = "MR BRAIN W/WO") -> Dataset:
    """Patient and study attributes shared by every instance of one study (a made-up patient)."""
    study = Dataset()
    study.PatientName, study.PatientID = "Test^Patient", "NS-TEST-1"
    study.PatientBirthDate, study.PatientSex = "19700101", "O"
    study.StudyInstanceUID, study.StudyDate, study.StudyTime = generate_uid(), "20261130", "101500"
    study.StudyID, study.AccessionNumber, study.StudyDescription = "1", accession, description
    study.ReferringPhysicianName = ""
    study.FrameOfReferenceUID = generate_uid()
    return study


def mr_series(study: Dataset, images: Sequence[Path | np.ndarray], series_number: int = 1,
              description: str = "AX T1 POST", spacing: float = 5.0, modality: str = "MR",
              instance_numbers: Sequence[int] | None = None) -> list[Dataset]:
    """One series of ``images`` (files or uint8 arrays), slice k at z = k * spacing (inferior first);
    each says, as scanners write, how many images the acquisition has (ImagesInAcquisition)."""
    series_uid = generate_uid()
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, len(images) + 1))
    return [_instance(study, series_uid, series_number, description, modality, _grey(image), k * spacing, numbers[k],
                      len(images))
            for k, image in enumerate(images)]


def _grey(image: Path | np.ndarray) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else np.asarray(Image.open(image).convert("L"))


def _instance(study: Dataset, series_uid: str, series_number: int, description: str, modality: str,
              pixels: np.ndarray, z: float, number: int, images_in_acquisition: int) -> Dataset:
    ds = Dataset()
    ds.update(study)
    sop_class = MR_IMAGE if modality == "MR" else CT_IMAGE
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = modality, series_uid, series_number
    ds.SeriesDescription, ds.BodyPartExamined = description, "BRAIN" if modality == "MR" else "CHEST"
    ds.InstanceNumber, ds.PositionReferenceIndicator, ds.PatientPosition = number, "", "HFS"
    ds.ImagesInAcquisition = images_in_acquisition
    ds.Manufacturer = "NeuroScan test series"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER" if modality == "MR" else "AXIAL"]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, z], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness, ds.PixelSpacing, ds.SliceLocation = 5.0, [1.0, 1.0], z
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (pixels.astype(np.uint16) * 16).tobytes()
    ds.WindowCenter, ds.WindowWidth = 2040, 4080
    if modality == "MR":
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 10.0, 500.0, 1, 1.5
    else:
        ds.KVP, ds.RescaleIntercept, ds.RescaleSlope = 120, -1024, 1
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def to_bytes(dataset: Dataset) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dciodvfy_errors(dataset: Dataset, folder: Path) -> list[str]:
    """The errors dicom3tools' validator finds in ``dataset`` (written into ``folder``)."""
    path = folder / f"{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    output = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return [line for line in (output.stdout + output.stderr).splitlines() if line.startswith("Error")]
