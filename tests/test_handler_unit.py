"""The handler without a server: batches of mixed items, every input type, DICOM, metrics."""

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from PIL import Image
from pydicom.data import get_testdata_file
from ts.context import Context
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handler.brain_tumor_handler import BrainTumorHandler
from handler.explain import HEATMAP_PIXELS
from neuroscan.classes import CLASSES
from neuroscan.imaging import decode_image
from tests.images import encode, mr_dicom, noise_image, non_mri_images, synthetic_slice

REPO = Path(__file__).resolve().parents[1]
METRICS_YAML = Path(__import__("ts").__file__).parent / "configs" / "metrics.yaml"


def shipped_config() -> dict:
    """config/model-config.yaml with the eager backend (the ONNX files live only in the archive)."""
    config = yaml.safe_load((REPO / "config" / "model-config.yaml").read_text())
    config["handler"].update(backend="eager", backend_options={})
    return config


class RecordingContext(Context):
    """TorchServe's own Context, recording the per-item statuses the handler sets."""

    def __init__(self, model_dir: Path, headers: list[dict] | None = None):
        super().__init__("brain_tumor", str(model_dir), {"model": {}}, 1, None, "0.12.0")
        self.metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
        self.metrics.initialize_cache()
        self.model_yaml_config = shipped_config()
        self.statuses: dict[int, int] = {}
        self.headers = headers or []

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = code

    def get_all_request_header(self, idx: int) -> dict:
        return self.headers[idx] if idx < len(self.headers) else {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The weights as a worker sees them: the archive's directory."""
    directory = tmp_path_factory.mktemp("model")
    (directory / "brain_tumor.safetensors").symlink_to(REPO / "model_store" / "brain_tumor.safetensors")
    return directory


@pytest.fixture(scope="module")
def handler(model_dir: Path) -> BrainTumorHandler:
    service = BrainTumorHandler()
    service.initialize(RecordingContext(model_dir))
    return service


def run(handler: BrainTumorHandler, requests: list[dict], headers: list[dict] | None = None):
    context = RecordingContext(Path(handler.context.system_properties["model_dir"]), headers)
    context.metrics = handler.context.metrics
    return handler.handle(requests, context), context.statuses


def test_mixed_batch_answers_each_item_on_its_own(handler, val_images):
    good = val_images["pituitary"][0].read_bytes()
    requests = [{"body": good}, {"body": b""}, {"body": b"not an image"}, {"body": good[:2000]}, {"file": good}]
    answers, statuses = run(handler, requests)
    assert len(answers) == 5
    assert answers[0]["label"] == "pituitary" and answers[4]["label"] == "pituitary"
    assert statuses == {1: 400, 2: 415, 3: 422}
    assert [answers[i]["code"] for i in (1, 2, 3)] == ["empty_input", "unsupported_type", "corrupt_image"]


def colour_slice(val_images) -> np.ndarray:
    """A real slice whose three channels differ (R = slice, G = half of it, B = its negative), so any
    decoder that swaps or drops channels changes the model's input; a grey slice would hide that."""
    grey = np.asarray(Image.open(val_images["glioma"][0]).convert("L"))
    return np.stack([grey, grey // 2, 255 - grey], axis=-1)


def encoded(rgb: np.ndarray, fmt: str) -> bytes:
    """``rgb`` in ``fmt``; WebP lossless, JPEG at quality 100 without chroma subsampling."""
    options = {"WEBP": {"lossless": True}, "JPEG": {"quality": 100, "subsampling": 0}}.get(fmt, {})
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rgb_dicom(rgb: np.ndarray) -> bytes:
    """``rgb`` as an uncompressed colour DICOM secondary capture (8 bits, interleaved)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = ExplicitVRLittleEndian, SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, SecondaryCaptureImageStorage, generate_uid()
    ds.Modality, (ds.Rows, ds.Columns) = "OT", rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_lossless_formats_give_the_png_answer_and_a_channel_swap_would_not(handler, val_images):
    """Every lossless format (DICOM too) must reach the model with the PNG's very pixels, in RGB order:
    equal probabilities. The negative control shows a B<->R swap of the same picture changes them."""
    rgb = colour_slice(val_images)
    bodies = [encoded(rgb, fmt) for fmt in ("PNG", "BMP", "TIFF", "WEBP")] + [rgb_dicom(rgb)]
    answers, statuses = run(handler, [{"body": body} for body in bodies] + [{"body": encoded(rgb[..., ::-1].copy(), "PNG")}])
    assert statuses == {}
    assert [a["format"] for a in answers[:-1]] == ["png", "bmp", "tiff", "webp", "dicom"]
    reference, swapped = answers[0]["probabilities"], answers[-1]["probabilities"]
    for answer in answers[1:-1]:
        assert answer["probabilities"] == reference, answer["format"]
    assert max(abs(swapped[name] - reference[name]) for name in CLASSES) > 0.001  # exact equality above


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF", "WEBP"])
def test_every_image_type_keeps_its_channels_in_rgb_order(val_images, fmt):
    """The decoded picture's channel means are the source's (JPEG within its loss), channel by channel."""
    rgb = colour_slice(val_images)
    decoded = decode_image(encoded(rgb, fmt))
    assert decoded.format == fmt.lower() and decoded.image.mode == "RGB"
    means = np.asarray(decoded.image, dtype=np.float32).mean(axis=(0, 1))
    np.testing.assert_allclose(means, rgb.astype(np.float32).mean(axis=(0, 1)), atol=1.0)


def test_dicom_from_pydicom_test_data(handler):
    path = get_testdata_file("MR_small.dcm")
    answers, statuses = run(handler, [{"body": Path(path).read_bytes()}])
    assert statuses == {}
    assert answers[0]["format"] == "dicom"
    assert answers[0]["dicom_tags"]["Modality"] == "MR"
    assert "PatientName" not in json.dumps(answers[0])
    assert str(pydicom.dcmread(path).PatientName) not in json.dumps(answers[0])




def test_an_unforeseen_decoder_failure_costs_only_its_own_item(handler, val_images, monkeypatch):
    """Fault injection: a decoder raising something nobody catches by name must not fail the batch."""
    import handler.brain_tumor_handler as module

    real = module.decode_image

    def buggy_decoder(data: bytes):
        if data == b"BOOM":
            raise RuntimeError("a decoder bug")
        return real(data)

    monkeypatch.setattr(module, "decode_image", buggy_decoder)
    good = val_images["glioma"][0].read_bytes()
    answers, statuses = run(handler, [{"body": good}, {"body": b"BOOM"}, {"body": good}])
    assert statuses == {1: 422} and answers[1]["code"] == "corrupt_image"
    assert answers[0]["label"] == answers[2]["label"] == "glioma"

def dicom_bytes(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def test_compressed_and_odd_dicoms_in_one_batch_with_a_good_slice(handler, val_images):
    """PACS exports come JPEG-LS/JPEG 2000 compressed, multi-frame or in colour: each is decoded or
    refused on its own, and the good slice beside them still gets its answer."""
    names = ["MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
             "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm", "examples_palette.dcm", "JPGExtended.dcm"]
    good = val_images["glioma"][0].read_bytes()
    answers, statuses = run(handler, [{"body": dicom_bytes(name)} for name in names] + [{"body": good}])
    plain, jpeg_ls, jpeg_2000, rle, two_frame_rgb, ybr_video, palette, twelve_bit = answers[:-1]
    for compressed in (jpeg_ls, jpeg_2000, rle):  # lossless: the very same answer as the plain file
        assert compressed["probabilities"] == plain["probabilities"]
    assert "colour" in two_frame_rgb["mri_reason"]
    assert ybr_video["mri_reason"] == palette["mri_reason"] == "DICOM modality US: not an MR image"
    assert statuses == {names.index("JPGExtended.dcm"): 422}  # 12-bit JPEG: no decoder here
    assert "JPEG Extended" in twelve_bit["error"]
    assert answers[-1]["label"] == "glioma" and answers[-1]["is_mri"]


def other_scans() -> dict[str, bytes]:
    """pydicom's bundled files whose header names another modality or body part than a brain MR."""
    scans = {}
    for path in sorted(Path(pydicom.__file__).parent.joinpath("data", "test_files").rglob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        modality, body_part = header.get("Modality"), header.get("BodyPartExamined")
        if "PixelData" in pydicom.dcmread(path, force=True) and (
                modality not in (None, "MR", "OT") or body_part not in (None, "HEAD", "BRAIN")):
            scans[path.name] = path.read_bytes()
    return scans


def test_dicom_headers_of_other_scans_say_not_a_brain_mri(handler):
    """pydicom's CT (chest and head), ultrasound, nuclear medicine, segmentation, dose maps and an
    abdominal MR: their pixels can pass for a brain slice (chest CT, abdominal MR and segmentation
    did), their headers cannot. Files no decoder here can read are refused (422) instead."""
    scans = other_scans()
    answers, statuses = run(handler, [{"body": body} for body in scans.values()])
    decoded = {name: a for i, (name, a) in enumerate(zip(scans, answers)) if i not in statuses}
    print(f"{len(decoded)} of {len(scans)} other scans decoded; flagged: "
          f"{sum(not a['is_mri'] for a in decoded.values())}")
    assert len(decoded) >= 18 and set(statuses.values()) == {422}
    for name, answer in decoded.items():
        assert answer["is_mri"] is False and answer["mri_reason"].startswith("DICOM "), (name, answer["mri_reason"])
    assert decoded["examples_overlay.dcm"]["mri_reason"] == "DICOM body part ABDOMEN: not a brain scan"
    assert decoded["CT_small.dcm"]["mri_reason"] == "DICOM modality CT: not an MR image"

def test_a_description_naming_another_body_part_flags_an_mr_file(handler, caplog):
    """Same pixels, same modality: the spine series is flagged by its (check-only) protocol name alone; the
    brain series is not flagged by its header; neither answer carries those descriptions or the patient."""
    slice_ = synthetic_slice()
    spine = mr_dicom(slice_, ProtocolName="t1_tse_sag_cspine", StudyDescription="MRI BRAIN AND C-SPINE")
    brain = mr_dicom(slice_, SeriesDescription="T2 AX BRAIN", ProtocolName="t2_tse_tra Doe")
    with caplog.at_level("DEBUG"):
        answers, statuses = run(handler, [{"body": spine}, {"body": brain}])
    assert caplog.records and not any("Doe" in str(vars(record)) for record in caplog.records)
    assert statuses == {}
    assert answers[0]["is_mri"] is False
    assert answers[0]["mri_reason"] == "DICOM ProtocolName names CSPINE: not a brain scan"
    assert not (answers[1]["mri_reason"] or "").startswith("DICOM")
    assert all(set(a["dicom_tags"]).isdisjoint({"StudyDescription", "ProtocolName"}) for a in answers)
    text = json.dumps(answers)
    assert "t1_tse_sag" not in text and "AND C-SPINE" not in text and "Doe" not in text and "4711" not in text


def test_non_mri_images_are_flagged(handler):
    photo = Image.open(io.BytesIO(encode(noise_image(), "PNG")))
    blank = Image.new("L", (224, 224), 0)
    answers, _ = run(handler, [{"body": encode(photo, "PNG")}, {"body": encode(blank, "PNG")}])
    assert [a["is_mri"] for a in answers] == [False, False]
    assert "colour" in answers[0]["mri_reason"] and "blank" in answers[1]["mri_reason"]


def test_answers_say_whether_the_slice_is_inside_the_validated_domain(handler, model_dir, val_images, caplog):
    """Validation slices are in the domain (the limit leaves about 2% of them outside: at most 1 of these
    8); with the domain limit at 0 every brain MRI is outside it, stays ``is_mri: true``, says why, and is
    counted for the operators' alert."""
    bodies = [path.read_bytes() for paths in val_images.values() for path in paths[:2]]
    answers, _ = run(handler, [{"body": body} for body in bodies])
    assert all(a["in_domain"] == (a["domain_reason"] is None) for a in answers)
    assert sum(a["in_domain"] for a in answers) >= len(answers) - 1

    strict = BrainTumorHandler()
    context = RecordingContext(model_dir)
    context.model_yaml_config["handler"]["domain_threshold"] = 0.0
    strict.initialize(context)
    with caplog.at_level("INFO"):
        answers, statuses = run(strict, [{"body": body} for body in bodies] + [{"body": encode(noise_image(), "PNG")}])
    assert statuses == {}
    assert all(a["is_mri"] and not a["in_domain"] and "validated" in a["domain_reason"] for a in answers[:-1])
    assert not answers[-1]["is_mri"] and answers[-1]["domain_reason"] == answers[-1]["mri_reason"]
    # the metric line TorchServe's frontend turns into a Prometheus counter; the not-MRI picture is not in it
    assert f"[METRICS]OutOfDomainAnswers.Count:{len(bodies)}|" in caplog.text


def test_explanation_returns_a_heatmap_png(handler, val_images):
    body = val_images["meningioma"][0].read_bytes()
    answers, _ = run(handler, [{"body": body}, {"body": body}], headers=[{"explain": "True"}, {}])
    heatmap = Image.open(io.BytesIO(base64.b64decode(answers[0]["heatmap_png"])))
    assert heatmap.size == (HEATMAP_PIXELS, HEATMAP_PIXELS) and heatmap.mode == "RGBA"
    assert heatmap.getextrema()[3][1] > 200  # some region is strongly highlighted
    assert "heatmap_png" not in answers[1]


def test_synthetic_slice_decodes_and_is_classified(handler):
    answers, statuses = run(handler, [{"body": encode(synthetic_slice(), "PNG")}])
    assert statuses == {} and answers[0]["label"] in CLASSES


def test_missing_weights_fail_the_worker_at_start(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        BrainTumorHandler().initialize(RecordingContext(tmp_path))


def test_corrupt_weights_fail_the_worker_at_start(tmp_path):
    (tmp_path / "brain_tumor.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeError, match="corrupt|metadata"):
        BrainTumorHandler().initialize(RecordingContext(tmp_path))


def test_archive_carries_core_package_and_handler():
    names = zipfile.ZipFile(REPO / "model_store" / "brain_tumor.mar").namelist()
    for required in ("brain_tumor_handler.py", "brain_tumor.safetensors", "neuroscan/preprocess.py",
                     "handler/features.py", "model-config.yaml"):
        assert required in names


def test_a_slice_through_a_large_lesion_is_a_brain_mri_outside_the_domain(handler):
    """Slices through the BraTS metastasis lie as far from the training slices as grey photos; framed
    like a head, they are answered as brain MRI the model was not validated on, never as non-MRI."""
    from training.external_volumes import axial_slices, load_nifti

    path = REPO.parent / "shared" / "data" / "external" / "brats-met-00110" / "t2f.nii.gz"
    if not path.is_file():
        pytest.fail(f"external MRI volume not found at {path}")
    slices = axial_slices(load_nifti(path))
    answers, _ = run(handler, [{"body": encode(Image.fromarray(slices[k]), "PNG")} for k in (71, 88, 90)])
    assert [(a["is_mri"], a["in_domain"]) for a in answers] == [(True, False)] * 3, answers


def test_not_mri_check_flags_photos_and_passes_real_mris(handler, mri_root):
    """The 2.3 operating point (MODEL_CARD.md, "Not-an-MRI check"): 36 of 38 non-MRI pictures get no
    reliable answer (``is_mri`` or ``in_domain`` false; 2.1: 37; 2.2: 35), 30 of 38 are ``is_mri: false``
    outright (1.x: 37; 2.0: 31; 2.1: 33; 2.2: 29, as 2.x trades some grey photos for fewer false alarms on
    other hospitals' brain MRI), and <= 1% of the validation MRIs (all 1,142, never seen by the neighbour bank) are flagged."""
    from training.split import load_split

    photos = non_mri_images()
    answers, _ = run(handler, [{"body": body} for body in photos.values()])
    passed = [name for name, a in zip(photos, answers) if a["is_mri"]]
    trusted = [name for name, a in zip(photos, answers) if a["in_domain"]]
    val = load_split().val
    mri_answers = []
    for start in range(0, len(val), 16):
        chunk = val[start:start + 16]
        mri_answers += run(handler, [{"body": (mri_root / rel).read_bytes()} for rel in chunk])[0]
    false_alarms = sum(not a["is_mri"] for a in mri_answers) / len(mri_answers)
    print(f"non-MRI: is_mri false {1 - len(passed) / len(photos):.1%} of {len(photos)} (passed {passed}), "
          f"no reliable answer {1 - len(trusted) / len(photos):.1%} (in domain: {trusted}); "
          f"val MRIs flagged {false_alarms:.2%} of {len(mri_answers)}")
    # 94.7%, below the 1.x bar of 95% (2.0: 94.7%; 2.1: 97.4%; 2.2: 92.1%): in MODEL_CARD.md
    assert len(trusted) <= 3, trusted
    assert 1 - len(passed) / len(photos) >= 0.75, passed
    assert false_alarms <= 0.01
