"""Dashboard building blocks without the UI: accounts, settings, case store, report, metrics, client."""

import io
import json
import sqlite3
from datetime import date, timedelta

import pypdf
import pytest
from dashboard_fixtures import dicom_file, mri_image
from ops_fixtures import free_port
from PIL import Image

from dashboard.auth import AccountStore, hash_password, verify_password
from dashboard.client import ServerError, TorchServeClient
from dashboard.findings import headline, warnings_for
from dashboard.images import png_bytes, prepare
from dashboard.metrics import ServeHistory, parse_torchserve
from dashboard.report import build_report
from dashboard.settings import REPO_ROOT, load_settings
from dashboard.store import CaseQuery, CaseStore
from dashboard.users import main as users_main
from neuroscan.classes import CLASSES


def test_password_hashes_are_salted_and_verified() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second  # a fresh salt each time
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("anything", "not-a-hash")


def test_accounts_file_holds_no_plain_password(tmp_path) -> None:
    store = AccountStore(tmp_path / "accounts.json")
    store.add("dr.who", "tardis-blue-box", "clinician")
    assert "tardis-blue-box" not in store.path.read_text()
    assert store.path.stat().st_mode & 0o077 == 0  # owner-only
    assert store.authenticate("dr.who", "tardis-blue-box").role == "clinician"
    assert store.authenticate("dr.who", "wrong-password") is None
    assert store.authenticate("nobody", "tardis-blue-box") is None
    with pytest.raises(ValueError):
        store.add("dr.short", "short", "clinician")
    with pytest.raises(ValueError):
        store.add("dr.root", "long-enough-password", "superuser")


def test_first_admin_comes_from_environment(tmp_path) -> None:
    store = AccountStore(tmp_path / "accounts.json")
    assert store.ensure_admin("admin", {"NEUROSCAN_ADMIN_PASSWORD": "chosen-admin-password"}) is None
    assert store.authenticate("admin", "chosen-admin-password").role == "admin"
    assert store.ensure_admin("admin", {}) is None  # an admin exists: nothing changes


def test_first_admin_without_environment_gets_a_random_password(tmp_path) -> None:
    first = AccountStore(tmp_path / "a.json").ensure_admin("admin", {})
    second = AccountStore(tmp_path / "b.json").ensure_admin("admin", {})
    assert first and second and first != second  # never a fixed default
    assert AccountStore(tmp_path / "a.json").authenticate("admin", first) is not None


def test_users_command_adds_an_account(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("NEUROSCAN_ACCOUNTS_FILE", str(tmp_path / "accounts.json"))
    monkeypatch.setenv("NEUROSCAN_NEW_PASSWORD", "ward-seven-password")
    users_main(["add", "dr.grey", "--role", "admin"])
    assert "dr.grey" in capsys.readouterr().out
    assert AccountStore(tmp_path / "accounts.json").authenticate("dr.grey", "ward-seven-password").role == "admin"


def test_settings_come_from_toml_with_environment_overrides() -> None:
    settings = load_settings({"NEUROSCAN_PORT": "9123", "NEUROSCAN_DATABASE": "elsewhere/cases.db",
                              "NEUROSCAN_LOW_CONFIDENCE_THRESHOLD": "0.5"})
    assert settings.port == 9123
    assert settings.database == REPO_ROOT / "elsewhere" / "cases.db"
    assert settings.low_confidence_threshold == 0.5
    assert settings.host == "127.0.0.1" and settings.model_name == "brain_tumor"


def _result(label: str, confidence: float = 0.9, version: str = "1.0") -> dict:
    probabilities = dict.fromkeys(CLASSES, (1 - confidence) / 3) | {label: confidence}
    return {"label": label, "probabilities": probabilities, "confidence": confidence, "model_version": version,
            "is_mri": True, "mri_reason": None, "tumour": label != "notumor", "format": "jpeg", "dicom_tags": {}}


def _add(store: CaseStore, label: str, user: str = "dr.a", sha: str = "ab" * 32, heatmap: bytes | None = None) -> int:
    prepared = prepare(mri_image(label).read_bytes(), 64)
    return store.add(username=user, image_sha256=sha, thumbnail=prepared.thumbnail_png, image=prepared.view_png,
                     heatmap=heatmap, result=_result(label))


def test_case_store_searches_by_class_text_and_date(tmp_path) -> None:
    store = CaseStore(tmp_path / "cases.sqlite3")
    glioma = _add(store, "glioma", user="dr.a", sha="aa" * 32)
    notumor = _add(store, "notumor", user="dr.b", sha="bb" * 32)
    old = _add(store, "glioma", user="dr.b", sha="cc" * 32)
    last_week = (date.today() - timedelta(days=7)).isoformat() + "T10:00:00+00:00"
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE cases SET created_at = ? WHERE id = ?", (last_week, old))

    def ids(**query) -> list[int]:
        return [case.id for case in store.search(CaseQuery(**query))]

    assert ids() == [old, notumor, glioma]
    assert ids(label="glioma") == [old, glioma]
    assert ids(text="dr.b") == [old, notumor]
    assert ids(text="BBBB") == [notumor]  # SHA-256 prefix, any case
    assert ids(text=f"#{glioma}") == [glioma]
    assert ids(since=date.today() - timedelta(days=1)) == [notumor, glioma]
    assert ids(until=date.today() - timedelta(days=1)) == [old]


def test_feedback_is_kept_with_the_case(tmp_path) -> None:
    store = CaseStore(tmp_path / "cases.sqlite3")
    case_id = _add(store, "glioma")
    store.record_feedback(case_id, username="dr.b", agrees=False, corrected_label="meningioma")
    case = store.get(case_id)
    assert (case.feedback_agrees, case.corrected_label, case.feedback_by) == (False, "meningioma", "dr.b")
    with pytest.raises(ValueError):
        store.record_feedback(case_id, username="dr.b", agrees=False, corrected_label="banana")


def test_report_is_one_page_with_class_heatmap_and_disclaimer(tmp_path) -> None:
    store = CaseStore(tmp_path / "cases.sqlite3")
    heatmap = png_bytes(Image.new("RGBA", (224, 224), (255, 0, 0, 128)))
    case = store.get(_add(store, "meningioma", heatmap=heatmap))
    reader = pypdf.PdfReader(io.BytesIO(build_report(case, 0.7)))
    text = reader.pages[0].extract_text()
    assert len(reader.pages) == 1
    assert "Meningioma" in text and "Model version 1.0" in text and "not a diagnosis" in text
    assert len(reader.pages[0].images) == 2  # the image and its heatmap overlay


def test_dicom_preview_keeps_tags_but_not_the_patient() -> None:
    prepared = prepare(dicom_file().read_bytes(), 64)
    assert prepared.dicom_tags["Modality"] == "MR"
    assert "CompressedSamples" not in json.dumps(prepared.dicom_tags)


TORCHSERVE_SCRAPE = """\
# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="brain_tumor",model_version="default",hostname="h",} 10.0
ts_inference_requests_total{model_name="other",model_version="default",hostname="h",} 99.0
# HELP ts_inference_latency_microseconds Cumulative inference duration in microseconds
# TYPE ts_inference_latency_microseconds counter
ts_inference_latency_microseconds{model_name="brain_tumor",model_version="default",hostname="h",} 500000.0
# HELP PredictionsPerClass Predictions by class
# TYPE PredictionsPerClass counter
PredictionsPerClass{class="glioma",ModelName="brain_tumor",Level="Model",Hostname="h",} 7.0
PredictionsPerClass{class="notumor",ModelName="brain_tumor",Level="Model",Hostname="h",} 3.0
"""


def test_torchserve_scrape_becomes_rates_and_class_counts() -> None:
    first = parse_torchserve(TORCHSERVE_SCRAPE, "brain_tumor", at=100.0)
    assert (first.requests, first.latency_us) == (10.0, 500000.0)
    assert first.per_class == {"glioma": 7.0, "meningioma": 0.0, "notumor": 3.0, "pituitary": 0.0}
    later = TORCHSERVE_SCRAPE.replace("} 10.0", "} 30.0").replace("} 500000.0", "} 1500000.0")
    history = ServeHistory(points=5)
    history.add(first, "t0")
    history.add(parse_torchserve(later, "brain_tumor", at=110.0), "t1")
    assert list(history.rates) == [2.0]  # 20 requests in 10 s
    assert list(history.latencies_ms) == [50.0]  # 1 s of inference over 20 requests


@pytest.mark.asyncio
async def test_client_reports_a_stopped_server_in_plain_words(monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("NEUROSCAN_INFERENCE_URL", closed)
    client = TorchServeClient(load_settings())
    with pytest.raises(ServerError) as caught:
        await client.explain(mri_image().read_bytes())
    await client.aclose()
    assert caught.value.code == "unavailable"
    assert "cannot be reached" in caught.value.message


def test_warnings_speak_plainly_about_doubtful_results() -> None:
    assert [caution.kind for caution in warnings_for(_result("glioma", confidence=0.55), 0.7)] == [
        "low_confidence", "tumour"]
    assert warnings_for(_result("notumor", confidence=0.95), 0.7) == []


def test_an_unreliable_result_gets_one_caution_and_no_diagnosis_in_large_type() -> None:
    not_mri = _result("glioma", confidence=0.55) | {"is_mri": False, "mri_reason": "colour image",
                                                    "in_domain": False}
    outside = _result("pituitary", confidence=0.99) | {"in_domain": False, "domain_reason": "unlike"}
    assert [caution.kind for caution in warnings_for(not_mri, 0.7)] == ["not_mri"]
    assert [caution.kind for caution in warnings_for(outside, 0.7)] == ["out_of_domain"]
    assert headline(outside).title == "No reliable result"
    assert "Pituitary tumour (99%)" in headline(outside).detail and "unvalidated" in headline(outside).detail
    assert headline(not_mri).title == "Not a brain MRI"
    assert headline(_result("pituitary", confidence=0.99)).title == "Pituitary tumour"


def test_report_of_an_out_of_domain_case_leads_with_no_reliable_result(tmp_path) -> None:
    store = CaseStore(tmp_path / "cases.sqlite3")
    prepared = prepare(mri_image("glioma").read_bytes(), 64)
    result = _result("glioma", confidence=0.97) | {"in_domain": False, "domain_reason": "unlike"}
    case_id = store.add(username="dr.a", image_sha256="cd" * 32, thumbnail=prepared.thumbnail_png,
                        image=prepared.view_png, heatmap=None, result=result)
    text = pypdf.PdfReader(io.BytesIO(build_report(store.get(case_id), 0.7))).pages[0].extract_text()
    assert "Result: No reliable result" in text and "validated" in text
    assert "Tumour found" not in text
