"""Images made on the spot, for tests that must run anywhere (no dataset needed)."""

import io
from pathlib import Path

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


def non_mri_images() -> dict[str, bytes]:
    """Photos shipped with scikit-image (colour and greyscale), noise, blank and gradient images."""
    from skimage import data
    from skimage.color import rgb2gray

    images = {}
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "colorwheel", "cat", "logo"):
        rgb = getattr(data, name)()[..., :3]
        images[name] = encode(Image.fromarray(rgb), "PNG")
        grey = (rgb2gray(rgb) * 255).astype("uint8")
        images[f"{name}_grey"] = encode(Image.fromarray(grey), "PNG")
    for name in ("camera", "moon", "coins", "page", "text", "checkerboard", "clock", "horse", "grass",
                 "gravel", "brick", "microaneurysms", "cell", "binary_blobs"):
        pixels = getattr(data, name)()
        images[name] = encode(Image.fromarray((pixels * 255 if pixels.dtype == bool else pixels).astype("uint8")), "PNG")
    images["noise"] = encode(noise_image(), "PNG")
    images["blank"] = encode(Image.new("L", (224, 224), 0), "PNG")
    images["white"] = encode(Image.new("L", (224, 224), 255), "PNG")
    ramp = Image.linear_gradient("L").resize((224, 224))
    images["gradient"] = encode(ramp, "PNG")
    return images


def more_packaged_pictures() -> dict[str, bytes]:
    """Pictures shipped with scikit-image that :func:`non_mri_images` does not use: photos, a chart,
    chessboards, 100 small face photos and the Shepp-Logan head phantom."""
    from skimage import data

    folder = Path(data.data_dir)
    images = {name: (folder / name).read_bytes() for name in (
        "chessboard_GRAY.png", "chessboard_RGB.png", "clock_motion.png", "color.png", "motorcycle_left.png",
        "motorcycle_right.png", "phantom.png")}
    for k, face in enumerate(np.load(folder / "lfw_subset.npy")[:100]):
        images[f"face_{k}"] = encode(Image.fromarray((face * 255).round().astype(np.uint8)), "PNG")
    return images
