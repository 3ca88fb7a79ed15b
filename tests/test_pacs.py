"""Studies end to end: C-STORE into a real Orthanc, the real worker, a real TorchServe, SR/PDF back.

The study is what a scanner would send: an axial MR series of glioma slices (instance numbers
shuffled, so only the positions give the order), an MR series of no-tumour slices, a CT series
and one MR instance whose pixel data is cut short.
"""

import asyncio
import io
import json
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from neuroscan.study_results import StudyResults
from pacs.inference import ServerUnavailable, TorchServeCalls
from pacs.orthanc import runtime_config
from tests.dicom_series import dciodvfy_errors, mr_series, study_attributes, to_bytes
from tests.orthanc_fixture import (
    network_address,
    start_orthanc,
    start_worker,
    stop_orthanc,
    wait_until,
)
from tests.torchserve_fixture import (
    REPO,
    free_ports,
    restart_torchserve,
    running_torchserve,
)

GLIOMA_SLICES = 5


def write(datasets, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def corrupt(dataset) -> pydicom.Dataset:
    """The same slice with its pixel data cut to a tenth: Orthanc stores it, nobody can decode it."""
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 10]
    return dataset


def study_done(results_db: Path, study_uid: str):
    if not results_db.exists():
        return None
    result = StudyResults(results_db).study(study_uid)
    return result if result is not None and result.status in ("done", "not_analysed", "failed") else None


def dicomweb_instances(orthanc, study_uid: str, modality: str) -> list[pydicom.Dataset]:
    """QIDO-RS for the study's series of ``modality``, then WADO-RS of their instances."""
    found = orthanc.get(f"/dicom-web/studies/{study_uid}/series", params={"Modality": modality}).json()
    datasets = []
    for series in found:
        series_uid = series["0020000E"]["Value"][0]
        response = orthanc.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}",
                               headers={"Accept": 'multipart/related; type="application/dicom"'})
        if response.status_code == 404:  # replaced by the worker between the search and the fetch
            continue
        response.raise_for_status()
        datasets += [pydicom.dcmread(io.BytesIO(part)) for part in _parts(response)]
    return datasets


def _parts(response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    chunks = response.content.split(b"--" + boundary)[1:-1]
    return [chunk.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") for chunk in chunks]


@pytest.fixture(scope="module")
def sent_study(orthanc, torchserve, tmp_path_factory, mri_root, val_images):
    """One study C-STOREd while the worker runs; yields what the worker made of it."""
    home = tmp_path_factory.mktemp("pacs")
    study = study_attributes(accession="ACC-E2E")
    glioma = mr_series(study, val_images["glioma"][:GLIOMA_SLICES], 1, "AX T1 POST",
                       instance_numbers=[3, 5, 1, 4, 2])
    notumor = mr_series(study, val_images["notumor"][:4], 2, "AX T2")
    ct = mr_series(study, [np.full((64, 64), 40, np.uint8)] * 2, 3, "CT HEAD", modality="CT")
    broken = corrupt(mr_series(study, val_images["glioma"][5:6], 1, "AX T1 POST")[0])
    broken.SeriesInstanceUID, broken.ImagePositionPatient = glioma[0].SeriesInstanceUID, [0.0, 0.0, 100.0]
    worker = start_worker(home / "worker", orthanc, torchserve)
    try:
        orthanc.store(write(glioma + notumor + ct + [broken], home / "study"))
        result = wait_until(lambda: study_done(worker.results_db, study.StudyInstanceUID), timeout=120)
    finally:
        worker.stop()
    yield {"study": study, "glioma": glioma, "notumor": notumor, "broken": broken, "result": result,
           "results": StudyResults(worker.results_db), "worker": worker, "home": home}


def test_study_is_analysed_by_itself_with_a_verdict_per_series(sent_study):
    result = sent_study["results"].study(sent_study["study"].StudyInstanceUID)
    assert result.status == "done" and result.verdict == "glioma"
    by_uid = {s.series_uid: s for s in result.series}
    glioma = by_uid[sent_study["glioma"][0].SeriesInstanceUID]
    assert glioma.verdict == "glioma" and glioma.summary["slices"] == GLIOMA_SLICES + 1
    assert glioma.summary["failed"] == 1
    # ordered by position along the normal, not by the shuffled instance numbers; the broken slice is last (z=100)
    expected = [str(ds.SOPInstanceUID) for ds in sent_study["glioma"]] + [str(sent_study["broken"].SOPInstanceUID)]
    assert [s["instance_uid"] for s in glioma.slices] == expected
    assert glioma.slices[-1]["error"] == "corrupt_image"
    assert by_uid[sent_study["notumor"][0].SeriesInstanceUID].verdict == "notumor"
    assert any("series 3 (CT" in note and "not an MR series" in note for note in result.notes)
    assert any("refused (corrupt_image)" in note for note in result.notes)
    heatmap = sent_study["results"].heatmap(glioma.series_uid, glioma.model_version, expected[0])
    assert heatmap is not None and heatmap.startswith(b"\x89PNG")


def test_slices_are_classified_as_they_arrive(sent_study):
    """Each MR instance (the corrupt one too: its refusal is its answer) was classified from its
    NewInstance change, before the study was stable: the analysis sent none of them again."""
    uid = sent_study["study"].StudyInstanceUID
    lines = [json.loads(line) for line in sent_study["worker"].log.read_text().splitlines() if line.startswith("{")]
    (analysed,) = [r for r in lines if r.get("message", "").startswith(f"study {uid} analysed")]
    assert analysed["slices"] == GLIOMA_SLICES + 1 + 4
    assert analysed["answered_ahead"] == analysed["slices"]


def test_a_study_complete_by_its_headers_is_analysed_before_it_is_stable(orthanc, torchserve, tmp_path, val_images):
    """Every instance says how many the acquisition has (ImagesInAcquisition): once all of them are
    in and answered, the study is analysed without waiting out Orthanc's StableAge. A series with
    one instance missing waits for StableStudy."""
    complete, short = study_attributes(accession="ACC-COMPLETE"), study_attributes(accession="ACC-SHORT")
    whole = mr_series(complete, val_images["glioma"][:3], 1, "AX T1") + mr_series(complete, val_images["glioma"][3:6], 2,
                                                                                   "AX T2")
    missing_one = mr_series(short, val_images["glioma"][:4], 1, "AX T1")[:3]  # declares 4
    # from the feed's current end: a worker replaying the session's earlier studies first would
    # reach these only once they are stable anyway
    results_db = tmp_path / "w" / "results.sqlite3"
    results_db.parent.mkdir()
    StudyResults(results_db).set_last_change(int(orthanc.get("/changes", params={"last": ""}).json()["Last"]))
    worker = start_worker(tmp_path / "w", orthanc, torchserve, results_db=results_db)
    try:
        orthanc.store(write(whole, tmp_path / "whole") + write(missing_one, tmp_path / "short"))
        for uid in (complete.StudyInstanceUID, short.StudyInstanceUID):
            wait_until(lambda uid=uid: study_done(worker.results_db, uid), timeout=120)
    finally:
        worker.stop()
    records = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]

    def analysed(uid: str) -> dict:
        (record,) = [r for r in records if r.get("message", "").startswith(f"study {uid} analysed")]
        return record
    assert analysed(complete.StudyInstanceUID)["before_stable"] is True
    assert analysed(short.StudyInstanceUID)["before_stable"] is False
    assert StudyResults(worker.results_db).study(complete.StudyInstanceUID).verdict == "glioma"


def test_sr_in_the_study_has_the_verdict_and_references_the_slices(sent_study, orthanc, tmp_path):
    study_uid = sent_study["study"].StudyInstanceUID
    (sr,) = dicomweb_instances(orthanc, study_uid, "SR")
    assert sr.StudyInstanceUID == study_uid and sr.Manufacturer == "NeuroScan"
    items = list(_walk(sr))
    texts = [str(item.TextValue) for item in items if "TextValue" in item]
    codes = [str(item.CodeValue) for item in items if "CodeValue" in item]
    assert any(t.startswith("Not a medical device") for t in texts)
    assert "GLIOMA" in codes and "NOTUMOR" in codes  # the verdict and the no-tumour slices
    assert sent_study["result"].model_version in texts  # TID 4019 Algorithm Version
    referenced = {str(item.ReferencedSOPInstanceUID) for item in items if "ReferencedSOPInstanceUID" in item}
    analysed = {str(ds.SOPInstanceUID) for ds in sent_study["glioma"] + sent_study["notumor"]}
    assert analysed <= referenced
    assert dciodvfy_errors(sr, tmp_path) == []


def test_pdf_in_the_study_opens_and_says_the_verdict(sent_study, orthanc, tmp_path):
    (document,) = dicomweb_instances(orthanc, sent_study["study"].StudyInstanceUID, "DOC")
    assert document.MIMETypeOfEncapsulatedDocument == "application/pdf"
    pdf = document.EncapsulatedDocument[: int(document.EncapsulatedDocumentLength)]
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Study verdict: Glioma" in text and "not an MR series" in text and "Test^Patient" not in text
    assert dciodvfy_errors(document, tmp_path) == []


def test_worker_log_names_no_patient(sent_study):
    log = sent_study["worker"].log.read_text()
    assert "Test^Patient" not in log and "NS-TEST-1" not in log
    assert sent_study["study"].StudyInstanceUID in log


def test_restart_resumes_and_analyses_each_series_once(orthanc, torchserve, tmp_path, val_images):
    """A worker killed after a study's first series resumes from its feed position: the series it
    finished is not sent again, the series that came later is, and one SR replaces the first."""
    study = study_attributes(accession="ACC-RESTART")
    first = mr_series(study, val_images["pituitary"][:3], 1, "AX T1")
    worker = start_worker(tmp_path / "w", orthanc, torchserve)
    orthanc.store(write(first, tmp_path / "first"))
    wait_until(lambda: study_done(worker.results_db, study.StudyInstanceUID), timeout=120)
    worker.stop(signal.SIGKILL)
    second = mr_series(study, val_images["meningioma"][:3], 2, "AX T2")
    orthanc.store(write(second, tmp_path / "second"))
    restarted = start_worker(tmp_path / "w", orthanc, torchserve, results_db=worker.results_db)
    try:
        results = StudyResults(restarted.results_db)
        wait_until(lambda: len(getattr(results.study(study.StudyInstanceUID), "series", [])) == 2
                   and all(s.status == "done" for s in results.study(study.StudyInstanceUID).series), timeout=120)
        wait_until(lambda: len(dicomweb_instances(orthanc, study.StudyInstanceUID, "SR")) == 1
                   and _sr_references(orthanc, study.StudyInstanceUID) >= {str(d.SOPInstanceUID) for d in second})
    finally:
        restarted.stop()
    with sqlite3.connect(restarted.results_db) as db:
        attempts = dict(db.execute("SELECT series_uid, attempts FROM series_results"))
    assert attempts[first[0].SeriesInstanceUID] == 1 and attempts[second[0].SeriesInstanceUID] == 1


def test_study_without_mr_is_reported_and_the_next_study_still_analysed(orthanc, torchserve, tmp_path, val_images):
    ct_only = study_attributes(accession="ACC-CT")
    ct = mr_series(ct_only, [np.full((64, 64), 40, np.uint8)] * 3, 1, "CT CHEST", modality="CT")
    good = study_attributes(accession="ACC-GOOD")
    mr = mr_series(good, val_images["notumor"][:3], 1, "AX FLAIR")
    worker = start_worker(tmp_path / "w", orthanc, torchserve)
    try:
        orthanc.store(write(ct, tmp_path / "ct") + write(mr, tmp_path / "mr"))
        skipped = wait_until(lambda: study_done(worker.results_db, ct_only.StudyInstanceUID), timeout=120)
        analysed = wait_until(lambda: study_done(worker.results_db, good.StudyInstanceUID), timeout=120)
    finally:
        worker.stop()
    assert skipped.status == "not_analysed" and any("not an MR series" in n for n in skipped.notes)
    assert analysed.status == "done" and analysed.verdict == "notumor"
    assert dicomweb_instances(orthanc, ct_only.StudyInstanceUID, "SR") == []


def test_a_pacs_with_dicomweb_alone_is_polled_and_gets_its_reports(orthanc, torchserve, tmp_path, val_images):
    """pacs_kind = "dicomweb": the worker's PACS URL is Orthanc's DICOMweb root, so any call to
    Orthanc's own REST API (the change feed, /instances) would miss. The study is found by QIDO-RS
    polling, read by WADO-RS and gets its SR by STOW-RS; the SR and PDF it adds make the study
    change once more, which must not bring a second pair of reports."""
    study = study_attributes(accession="ACC-DICOMWEB")
    study.StudyDate = f"{date.today():%Y%m%d}"  # the poller lists the studies of the last lookback_days
    series = mr_series(study, val_images["glioma"][:GLIOMA_SLICES], 1, "AX T1 POST")
    worker = start_worker(tmp_path / "w", orthanc, torchserve, pacs_kind="dicomweb",
                          pacs_url=f"{orthanc.url}/dicom-web", stable_age_s="1", dicomweb_poll_s="0.5")
    try:
        orthanc.store(write(series, tmp_path / "study"))
        result = wait_until(lambda: study_done(worker.results_db, study.StudyInstanceUID), timeout=120)
        time.sleep(3)  # past another StableAge and several polls with the reports in the study
    finally:
        worker.stop()
    assert result.status == "done" and result.verdict == "glioma"
    assert len(dicomweb_instances(orthanc, study.StudyInstanceUID, "SR")) == 1
    assert {str(ds.SOPInstanceUID) for ds in series} <= _sr_references(orthanc, study.StudyInstanceUID)
    assert len(dicomweb_instances(orthanc, study.StudyInstanceUID, "DOC")) == 1
    with sqlite3.connect(worker.results_db) as db:
        attempts = db.execute("SELECT attempts FROM series_results WHERE series_uid = ?",
                              (str(series[0].SeriesInstanceUID),)).fetchall()
    assert attempts == [(1,)]
    assert "waiting for the PACS" not in worker.log.read_text()  # no call missed (no Orthanc REST path)


def test_a_fixed_management_key_replaces_the_key_file(torchserve, tmp_path):
    """Kubernetes: the worker reaches the management API through the proxy with the Secret's key
    (management_key_file), not TorchServe's key file. Here the key is the session server's own."""
    async def version(key_file: Path, key: str | None) -> str:
        calls = TorchServeCalls(torchserve.inference_url, torchserve.management_url, key_file,
                                torchserve.model_name, 30, 3600, management_key=key)
        try:
            return await calls.served_version()
        finally:
            await calls.aclose()
    served = asyncio.run(version(torchserve.key_file, None))  # the usual way: TorchServe's key file
    assert asyncio.run(version(tmp_path / "no-key-file.json", torchserve.key("management"))) == served
    with pytest.raises(ServerUnavailable):
        asyncio.run(version(tmp_path / "no-key-file.json", "not-the-key"))


def test_orthanc_credentials_are_generated_and_required(orthanc):
    account = json.loads(orthanc.credentials_file.read_text())
    assert set(account) == {"username", "password"} and len(account["password"]) >= 24
    assert orthanc.credentials_file.stat().st_mode & 0o077 == 0
    assert httpx.get(f"{orthanc.url}/system", timeout=10).status_code == 401
    assert httpx.get(f"{orthanc.url}/dicom-web/studies", auth=("neuroscan", "orthanc"), timeout=10).status_code == 401


def test_c_store_from_another_host_is_refused(orthanc, tmp_path, val_images):
    """Orthanc 1.10 listens on every interface; its Lua filter keeps out every sender that is not in
    NeuroScanDicomSenders (127.0.0.1 by default). The sender here is this machine on its network
    address, which Orthanc sees as another host."""
    address = network_address()
    study = study_attributes(accession="ACC-REMOTE")
    files = write(mr_series(study, val_images["glioma"][:2], 1, "AX T1"), tmp_path / "remote")
    subprocess.run(["storescu", "-aec", "NEUROSCAN", address, str(orthanc.dicom_port), *map(str, files)],
                   check=True, capture_output=True, timeout=60)
    assert lookup(orthanc, study.StudyInstanceUID) == []
    assert f"refused a C-STORE from {address} (calling AE STORESCU)" in (orthanc.home / "orthanc.log").read_text()
    orthanc.store(files)  # the same files from 127.0.0.1 are taken
    assert lookup(orthanc, study.StudyInstanceUID) == ["Study"]


def test_sender_filter_takes_only_addresses_and_star_turns_it_off(tmp_path):
    config = json.loads(runtime_config(tmp_path / "a", senders=["10.1.2.3", " ::1"]).read_text())
    assert "NeuroScanDicomSenders" not in config  # Orthanc never sees our key
    (script,) = config["LuaScripts"]
    assert Path(script).read_text().startswith('NEUROSCAN_DICOM_SENDERS = { ["10.1.2.3"] = true, ["::1"] = true }')
    assert "LuaScripts" not in json.loads(runtime_config(tmp_path / "b", senders=["*"]).read_text())
    with pytest.raises(ValueError):
        runtime_config(tmp_path / "c", senders=['1.2.3.4"] = true } os.execute("id") --'])


def lookup(orthanc, uid: str) -> list[str]:
    """What Orthanc holds under a DICOM UID (``["Study"]``, or nothing)."""
    found = httpx.post(f"{orthanc.url}/tools/lookup", content=str(uid), auth=orthanc.auth, timeout=30)
    return [item["Type"] for item in found.json()]


def _walk(dataset: pydicom.Dataset):
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _walk(item)


def _sr_references(orthanc, study_uid: str) -> set[str]:
    """The instances the study's SR(s) reference (empty while the worker is replacing it)."""
    return {str(item.ReferencedSOPInstanceUID) for sr in dicomweb_instances(orthanc, study_uid, "SR")
            for item in _walk(sr) if "ReferencedSOPInstanceUID" in item}



def test_worker_rides_out_an_orthanc_restart(torchserve, tmp_path, val_images):
    """Orthanc stopped and started again under a running worker: the worker waits, then analyses the
    study sent after the restart without being restarted itself."""
    ports = free_ports(2)
    pacs, process = start_orthanc(tmp_path / "orthanc", *ports)
    worker = start_worker(tmp_path / "w", pacs, torchserve)
    try:
        time.sleep(1.0)
        stop_orthanc(process)
        time.sleep(2.0)  # the worker's polls fail meanwhile
        pacs, process = start_orthanc(tmp_path / "orthanc", *ports)
        study = study_attributes(accession="ACC-PACS-RESTART")
        pacs.store(write(mr_series(study, val_images["glioma"][:3], 1, "AX T1 POST"), tmp_path / "s"))
        result = wait_until(lambda: study_done(worker.results_db, study.StudyInstanceUID), timeout=120)
        assert result.status == "done" and worker.process.poll() is None
        assert "waiting for the PACS or TorchServe" in worker.log.read_text()
    finally:
        worker.stop()
        stop_orthanc(process)


def test_an_instance_arriving_later_gets_its_series_analysed_again(orthanc, torchserve, tmp_path, val_images):
    study = study_attributes(accession="ACC-LATE")
    series = mr_series(study, val_images["glioma"][:4], 1, "AX T1 POST")
    worker = start_worker(tmp_path / "w", orthanc, torchserve)
    try:
        orthanc.store(write(series[:3], tmp_path / "early"))
        wait_until(lambda: study_done(worker.results_db, study.StudyInstanceUID), timeout=120)
        orthanc.store(write(series[3:], tmp_path / "late"))
        results = StudyResults(worker.results_db)
        wait_until(lambda: len(results.study(study.StudyInstanceUID).series[0].slices) == 4, timeout=120)
        wait_until(lambda: len(_sr_references(orthanc, study.StudyInstanceUID)
                               & {str(d.SOPInstanceUID) for d in series}) == 4, timeout=60)
    finally:
        worker.stop()
    assert results.study(study.StudyInstanceUID).series[0].attempts == 2


def test_worker_outlives_key_expiry_and_a_torchserve_restart(orthanc, tmp_path, val_images):
    """Keys that last one minute, slept through for real: the worker renews them and analyses a study
    after its starting keys died (same TorchServe: the API key is unchanged); then TorchServe restarts
    under it with new keys and the next study is analysed too, the worker never restarted."""
    base = (REPO / "config" / "config.properties").read_text().replace("token_expiration_min=1440",
                                                                        "token_expiration_min=1")
    (tmp_path / "ts").mkdir()
    with running_torchserve(tmp_path / "ts", base) as server:
        first = json.loads(server.key_file.read_text())
        worker = start_worker(tmp_path / "w", orthanc, server, key_check_s="2")
        try:
            dies = max(datetime.fromisoformat(first[api]["expiration time"]) for api in ("inference", "management"))
            time.sleep(max(0.0, (dies - datetime.now(UTC)).total_seconds()) + 3)
            for accession, label in (("ACC-EXPIRED", "glioma"), ("ACC-TS-RESTART", "pituitary")):
                study = study_attributes(accession=accession)
                orthanc.store(write(mr_series(study, val_images[label][:3], 1, "AX T1"), tmp_path / accession))
                result = wait_until(lambda s=study: study_done(worker.results_db, s.StudyInstanceUID), timeout=120)
                assert result.status == "done" and result.verdict == label
                if accession == "ACC-EXPIRED":
                    assert json.loads(server.key_file.read_text())["API"]["key"] == first["API"]["key"]
                    assert "renewed the TorchServe inference key" in worker.log.read_text()
                    restart_torchserve(server)
            assert worker.process.poll() is None
        finally:
            worker.stop()
