"""Where the external volumes come from: a folder of patient NIfTI files and packaged brain MRI.

- ``<external>/<volume>/<sequence>.nii.gz``: patient scans from collections that are not in the
  training set (``../shared/data/external``, see its README);
- brain MRI shipped inside installed packages, read from the package's own files so nothing
  is downloaded at run time: nilearn's MNI152 2009 T1 template (a skull-stripped average brain),
  Colin27 from Debian's mricron-data (one healthy adult's head, skull and scalp included, from
  below the skull base to the vertex) and pydicom's ``MR_small.dcm`` (a 64x64 crop of a T2 head
  slice), the latter through the same DICOM decoder and header check the service uses.

Left out on purpose: pydicom's ``emri_small*.dcm`` (they are in the pydicom-data set, which
``get_testdata_file`` would download) and nibabel's ``anatomical.nii`` (a 33x41x25 crop at 2 mm:
an upsampled blur, not a slice anyone exports).
"""

from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from neuroscan.imaging import decode_image
from training.external_volumes import Volume, axial_slices, load_nifti

NIFTI_SUFFIX = ".nii.gz"
MNI152_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
COLIN27_FILE = Path("/usr/share/mricron/templates/ch2.nii.gz")  # Debian's mricron-data
PYDICOM_FILES = ("MR_small.dcm",)


class ExternalDataMissing(FileNotFoundError):
    """The external folder is not where the command line says; the message names the setting."""


def patient_volumes(root: Path, collections: dict[str, str]) -> Iterator[Volume]:
    """Every ``<volume>/<sequence>.nii.gz`` under ``root``; ``collections`` maps volume -> collection."""
    if not root.is_dir():
        raise ExternalDataMissing(
            f"external MRI folder not found: {root} (set EXTERNAL=... for make, or --external for the command)")
    for path in sorted(root.glob(f"*/*{NIFTI_SUFFIX}")):
        volume, sequence = path.parent.name, path.name[: -len(NIFTI_SUFFIX)]
        if volume not in collections:
            raise ValueError(f"{volume} has no rows in the reference table: read it and add them first")
        yield Volume(collections[volume], volume, sequence, axial_slices(load_nifti(path)))


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{package} is not installed (pip install -r requirements.txt)")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} does not ship {relative}")
    return path


def mni152_file() -> Path:
    """nilearn's MNI152 2009a T1 template, as the pinned nilearn installs it."""
    return package_file("nilearn", MNI152_FILE)


def colin27_file() -> Path:
    """Colin27 as Debian's mricron-data installs it (``make install`` does)."""
    if not COLIN27_FILE.is_file():
        raise FileNotFoundError(f"{COLIN27_FILE} is missing: apt-get install mricron-data (make install does)")
    return COLIN27_FILE


def packaged_volumes() -> Iterator[Volume]:
    """The MNI152 and Colin27 templates (all slices) and pydicom's head MR slice, decoded as an upload would be."""
    yield Volume("nilearn", "mni152-2009a-sym", "t1", axial_slices(load_nifti(mni152_file())))
    yield Volume("mricron-data", "colin27", "t1", axial_slices(load_nifti(colin27_file())))
    for name in PYDICOM_FILES:
        decoded = decode_image(package_file("pydicom", f"data/test_files/{name}").read_bytes())
        yield Volume("pydicom", name, "t2", [np.asarray(decoded.image.convert("L"))], decoded.header)
