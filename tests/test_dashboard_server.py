"""Dashboard flows against the session's real TorchServe: analysis, DICOM, history, report, scaling.

``served`` points the dashboard at the ``torchserve`` fixture and must come before ``user``.
"""

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pypdf
import pytest
from dashboard_fixtures import (
    ADMIN,
    CLINICIAN,
    count,
    dicom_file,
    eventually,
    mri_image,
    sign_in,
    texts,
    upload,
)
from nicegui.testing import User
from PIL import Image

from dashboard.findings import DISPLAY_NAMES
from dashboard.images import png_bytes
from neuroscan.classes import CLASSES

pytestmark = pytest.mark.asyncio
INFERENCE_WAIT = 300  # retries of 0.1 s: a cold worker on a shared CPU can take seconds


def _cases(database) -> list[sqlite3.Row]:
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM cases ORDER BY id").fetchall()


async def test_mri_upload_shows_diagnosis_bars_heatmap_and_is_stored(served, user: User) -> None:
    await sign_in(user, CLINICIAN)
    image = mri_image("glioma")
    await upload(user, image)
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    [case] = _cases(served.database)
    result = json.loads(case["result"])
    assert case["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert case["username"] == CLINICIAN[0] and case["model_version"] and case["heatmap"]
    assert set(result["probabilities"]) == set(CLASSES)
    await user.should_see(DISPLAY_NAMES[case["label"]])
    await user.should_see(f"Calibrated confidence {case['confidence']:.1%}")
    for name in CLASSES:
        await user.should_see(marker=f"prob-{name}")
    if result["tumour"]:
        await user.should_see(marker="warning-tumour")
    await user.should_see(f"Server: Healthy | model {case['model_version']}", retries=50)
    await user.should_see(marker="heatmap")
    next(iter(user.find(marker="heatmap-opacity").elements)).value = 0.25
    assert next(iter(user.find(marker="heatmap").elements)).style["opacity"] == "0.25"
    user.find(marker="heatmap-toggle").click()
    await user.should_not_see(marker="heatmap")


async def test_batch_upload_analyses_every_image_and_refuses_the_rest(served, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image("notumor"), mri_image("pituitary"), ("scan.pdf", b"%PDF-1.4 not an image"))
    await user.should_see("Unsupported file type", retries=INFERENCE_WAIT)
    await eventually(lambda: count(user, "diagnosis") == 2)
    assert count(user, "case-card") == 3
    assert len(_cases(served.database)) == 2


@pytest.fixture
def strict_threshold(served, monkeypatch: pytest.MonkeyPatch):
    """A low-confidence threshold no answer can reach, so the warning must show."""
    monkeypatch.setenv("NEUROSCAN_LOW_CONFIDENCE_THRESHOLD", "1.01")
    return served


async def test_colour_photo_says_not_a_brain_mri_and_nothing_else(strict_threshold, user: User) -> None:
    """Even with a low-confidence threshold no answer reaches, a non-MRI picture gets one caution and no class."""
    x, y = np.meshgrid(np.arange(224), np.arange(224))
    rainbow = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)  # nothing like a grey MRI slice
    await sign_in(user, CLINICIAN)
    await upload(user, ("holiday.png", png_bytes(Image.fromarray(rainbow))))
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    await user.should_see("This image does not look like a brain MRI")
    await user.should_see("Not a brain MRI")
    await user.should_not_see(marker="warning-low_confidence")
    await user.should_not_see(marker="warning-tumour")


async def test_low_confidence_warning_on_a_brain_mri(strict_threshold, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image("glioma"))
    await user.should_see(marker="warning-low_confidence", retries=INFERENCE_WAIT)


async def test_a_slice_from_another_hospital_gets_no_reliable_result(served, user: User) -> None:
    """A FLAIR slice of the external BraTS case (far from the training slices, but a brain MRI) is
    shown as "No reliable result" with the domain caution, not as a confident class."""
    await sign_in(user, CLINICIAN)
    await upload(user, ("flair.png", png_bytes(Image.fromarray(external_slice("brats-met-00110", "t2f", 95)))))
    await user.should_see(marker="warning-out_of_domain", retries=INFERENCE_WAIT)
    await user.should_see("No reliable result")
    await user.should_not_see(marker="warning-tumour")
    await user.should_not_see("Calibrated confidence")


def external_slice(volume: str, sequence: str, k: int) -> np.ndarray:
    """Axial slice ``k`` of an external volume as ``make external`` renders it (8-bit, radiological view)."""
    from training.external_volumes import axial_slices, load_nifti

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "external" / volume / f"{sequence}.nii.gz"
    if not path.is_file():
        pytest.fail(f"external MRI volume not found at {path}")
    return axial_slices(load_nifti(path))[k]


async def test_dicom_upload_shows_tags_but_no_patient_name(served, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, dicom_file())
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    await user.should_see(marker="dicom-tags")
    await user.should_not_see("CompressedSamples")  # MR_small.dcm's PatientName
    await user.should_not_see("MR_small")  # DICOM file names often hold the patient's name: not shown either
    [case] = _cases(served.database)
    assert json.loads(case["result"])["dicom_tags"]["Modality"] == "MR"
    assert b"CompressedSamples" not in b"".join(str(value).encode() for value in case)


async def test_history_search_reopen_and_correct(served, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image("glioma", 1), mri_image("notumor", 1))
    await eventually(lambda: len(_cases(served.database)) == 2)
    first, second = _cases(served.database)
    await user.open("/history")
    await user.should_see("2 case(s)")
    assert count(user, "history-row") == 2
    next(iter(user.find(marker="search-class").elements)).value = first["label"]
    user.find(marker="search-text").type(first["image_sha256"][:12])
    user.find(marker="search-button").click()
    await user.should_see("1 case(s)")
    user.find(f"Open case {first['id']}").click()
    await user.should_see(f"Case {first['id']}")
    await user.should_see(marker="heatmap")  # the stored heatmap comes back with the case
    corrected = next(name for name in CLASSES if name != first["label"])
    next(iter(user.find(marker="corrected-label").elements)).value = corrected
    user.find(marker="correct").click()
    await user.should_see(f"Corrected to {DISPLAY_NAMES[corrected]} by {CLINICIAN[0]}.")
    reopened = {row["id"]: row for row in _cases(served.database)}
    assert reopened[first["id"]]["corrected_label"] == corrected
    assert reopened[second["id"]]["corrected_label"] is None


async def test_report_download_is_a_pdf_naming_the_class(served, user: User) -> None:
    await sign_in(user, CLINICIAN)
    await upload(user, mri_image("meningioma"))
    await user.should_see(marker="diagnosis", retries=INFERENCE_WAIT)
    [case] = _cases(served.database)
    user.find(marker=f"report-{case['id']}").click()
    response = await user.download.next(timeout=20)
    pdf = pypdf.PdfReader(io.BytesIO(response.content))
    text = pdf.pages[0].extract_text()
    assert len(pdf.pages) == 1
    assert DISPLAY_NAMES[case["label"]] in text and case["model_version"] in text


async def test_operator_scales_workers_for_real(served, user: User, torchserve) -> None:
    def workers() -> tuple[str, int]:  # asked of TorchServe itself, not of the page
        [entry] = torchserve.management("GET", f"/models/{torchserve.model_name}").json()
        return entry["modelVersion"], len(entry["workers"])

    def shown(count: int) -> bool:  # the page's own worker line, not the notification
        return any(text.startswith(f"{count} worker(s)") for text in texts(user, f"workers-{version}"))

    version, before = workers()
    await sign_in(user, ADMIN, "/operator")
    await eventually(lambda: shown(before))
    user.find(marker=f"scale-up-{version}").click()
    await eventually(lambda: shown(before + 1), timeout=120)
    assert workers() == (version, before + 1)
    user.find(marker=f"scale-down-{version}").click()
    await eventually(lambda: shown(before), timeout=120)
    assert workers() == (version, before)
    await user.should_see("requests served in total", retries=100)  # the metrics scrape reached TorchServe
    user.find(marker="set-default").click()  # one version only: re-affirming it must still succeed
    await user.should_see(f"Version {version} is now the default.", retries=100)
