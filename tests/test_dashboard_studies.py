"""The studies worklist and the study page, on results written as the PACS worker writes them."""

import time
from datetime import date, timedelta
from functools import partial

import pytest
from dashboard_fixtures import (
    CLINICIAN,
    count,
    dicom_file,
    eventually,
    sign_in,
    texts,
    upload,
)
from nicegui import ElementFilter, ui
from nicegui.testing import User
from orthanc_fixture import start_worker
from study_fixtures import (
    GLIOMA_RUN,
    FakePacs,
    make_study,
    mr_study,
    orthanc_id,
    record_analysis,
    second_series,
    store_in_orthanc,
)

from dashboard.pacs import Pacs
from dashboard.services import replace_services, services
from dashboard.settings import load_settings
from dashboard.study_view import slice_infos, strip_chart
from dashboard.worklist import WorklistFilter, matches, worklist
from neuroscan.study_results import StudyResult, StudyResults


def _studies(results) -> dict[str, object]:
    """Six studies, one per triage group, dated so newest-first within a group is visible."""
    return {
        "glioma-old": make_study(results, GLIOMA_RUN[:4], date="20261128", accession="ACC-GLIOMA-OLD"),
        "notumor": make_study(results, [("notumor", 0.97)] * 3, date="20261130", accession="ACC-NOTUMOR"),
        "inconclusive": make_study(results, [("notumor", 0.9)] * 3, date="20261129", accession="ACC-INCONCL",
                                   out_of_domain=frozenset({0, 1})),
        "waiting": make_study(results, None, date="20261130", accession="ACC-WAITING"),
        "pituitary": make_study(results, [("pituitary", 0.9), ("pituitary", 0.8)], date="20261130",
                                accession="ACC-PITUITARY"),
        "failed": make_study(results, [("notumor", 0.9)], date="20261127", accession="ACC-FAILED", status="failed"),
    }


def test_worklist_puts_suspected_tumours_first_then_newest() -> None:
    studies = [{"StudyInstanceUID": uid, "StudyDate": day} for uid, day in
               (("a", "20261101"), ("b", "20261103"), ("c", "20261102"), ("d", "20261104"), ("e", "2026-11-05"))]

    results = {uid: StudyResult(uid, "1", "x", status, verdict, [], [], "") for uid, status, verdict in
               (("a", "done", "glioma"), ("b", "done", "notumor"), ("c", "done", "meningioma"),
                ("d", "pending", None))}
    rows = worklist(studies, results)
    assert [r.study_uid for r in rows] == ["c", "a", "d", "e", "b"]  # e: waiting, its malformed date sorts last
    assert rows[3].study_date is None and rows[3].status == "waiting"
    since = WorklistFilter(since=date(2026, 11, 2))
    assert [r.study_uid for r in rows if matches(r, since)] == ["c", "d", "b"]
    assert [r.study_uid for r in rows if matches(r, WorklistFilter(status="suspected"))] == ["c", "a"]
    assert all(r.patient_name is None for r in rows)


def test_strip_chart_marks_key_slices_and_the_current_one(tmp_path) -> None:
    results = StudyResults(tmp_path / "results.sqlite3")
    made = make_study(results, GLIOMA_RUN, out_of_domain=frozenset({5}))
    series = results.study(made.study_uid).series[0]
    slices = slice_infos(series)
    assert [s.key for s in slices] == [False, False, True, True, False, False]
    assert [s.tumour_probability for s in slices] == pytest.approx([0.05, 0.1, 0.9667, 0.95, 0.3, 0.05], abs=1e-4)
    assert slices[5].note == "outside the validated domain" and slices[0].note is None
    options = strip_chart(slices, current=3)
    points = options["series"][0]["data"]
    assert [p["itemStyle"]["color"] for p in points] == ["#1e3a8a"] * 2 + ["#b91c1c"] * 2 + ["#1e3a8a", "#94a3b8"]
    assert options["series"][0]["markLine"]["data"] == [{"xAxis": "4"}]


@pytest.mark.asyncio
async def test_worklist_order_filters_and_no_patient_name(user: User) -> None:
    made = _studies(services().study_results)
    pacs = FakePacs(*made.values())
    replace_services(pacs=pacs)
    await sign_in(user, CLINICIAN, "/studies")
    await user.should_see("6 studies")
    assert _accessions(user) == ["ACC-PITUITARY", "ACC-GLIOMA-OLD", "ACC-INCONCL", "ACC-FAILED", "ACC-WAITING",
                                 "ACC-NOTUMOR"]
    assert texts(user, "verdict-badge")[:3] == ["Suspected pituitary tumour", "Suspected glioma", "Inconclusive"]
    await user.should_not_see("Test^Patient")
    assert pacs.asked_for_names == [False]  # the name is not even fetched

    user.find(marker="worklist-status").click()
    user.find("Suspected tumour").click()
    user.find(marker="worklist-search").click()
    await user.should_see("2 studies")
    assert _accessions(user) == ["ACC-PITUITARY", "ACC-GLIOMA-OLD"]

    user.find(marker="worklist-status").click()
    user.find("All studies").click()
    user.find(marker="worklist-since").type("2026-11-30")
    user.find(marker="worklist-search").click()
    await user.should_see("3 studies")
    assert _accessions(user) == ["ACC-PITUITARY", "ACC-WAITING", "ACC-NOTUMOR"]


@pytest.fixture
def names_shown(dashboard_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site that chose to show patients' names (request it before ``user``)."""
    monkeypatch.setenv("NEUROSCAN_SHOW_PATIENT_NAME", "true")


@pytest.mark.asyncio
async def test_worklist_shows_patient_name_only_when_configured(names_shown, user: User) -> None:
    pacs = FakePacs(make_study(services().study_results, GLIOMA_RUN))
    replace_services(pacs=pacs)
    await sign_in(user, CLINICIAN, "/studies")
    await user.should_see("Test^Patient - MR BRAIN")
    assert pacs.asked_for_names == [True]


@pytest.fixture
def last_week(dashboard_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worklist that opens on the last seven days (request it before ``user``)."""
    monkeypatch.setenv("NEUROSCAN_WORKLIST_DAYS", "7")


@pytest.mark.asyncio
async def test_worklist_opens_on_recent_studies(last_week, user: User) -> None:
    results = services().study_results
    recent = make_study(results, GLIOMA_RUN, date=f"{date.today() - timedelta(days=2):%Y%m%d}", accession="RECENT")
    replace_services(pacs=FakePacs(recent, make_study(results, GLIOMA_RUN, date="20200101", accession="OLD")))
    await sign_in(user, CLINICIAN, "/studies")
    await user.should_see("1 study")
    assert _accessions(user) == ["RECENT"]
    assert _element(user, "worklist-since").value == (date.today() - timedelta(days=7)).isoformat()


@pytest.mark.asyncio
async def test_worklist_explains_an_unreachable_pacs(user: User) -> None:
    await sign_in(user, CLINICIAN, "/studies")
    await user.should_see(marker="worklist-error")
    await user.should_see("The PACS cannot be reached")


@pytest.mark.asyncio
async def test_study_page_scrolls_slices_toggles_heatmap_and_keeps_the_review(user: User) -> None:
    made = make_study(services().study_results, GLIOMA_RUN, out_of_domain=frozenset({5}))
    replace_services(pacs=FakePacs(made))
    await sign_in(user, CLINICIAN, f"/studies/{made.study_uid}")
    await user.should_see("Suspected glioma")
    await user.should_see("2026-11-30 | MR BRAIN | accession ACC0001")
    await user.should_see("Slice 3 of 6")  # opens on the first key slice
    await user.should_see("Slice 3: Glioma, tumour probability 97%; a key slice.")
    view, heatmap = _element(user, "slice-view"), _element(user, "slice-heatmap")
    await eventually(lambda: view.props.get("src", "").startswith("data:image/png"), timeout=20)
    assert heatmap.props["src"].startswith("data:image/png") and heatmap.visible

    user.find(marker="slice-heatmap-toggle").click()
    assert not heatmap.visible
    user.find(marker="slice-heatmap-toggle").click()
    assert heatmap.visible

    first_src = view.props["src"]
    _press(user, "ArrowDown")
    await user.should_see("Slice 4 of 6")
    _press(user, "ArrowDown")
    await user.should_see("Slice 5 of 6")
    await eventually(lambda: view.props["src"] != first_src, timeout=20)
    await eventually(lambda: not heatmap.visible, timeout=5)  # slice 5 has no heatmap: nothing tumour-like
    user.find(marker="slice-next").click()
    await user.should_see("Slice 6: No tumour, tumour probability 5%; did not count (outside the validated domain).")
    user.find(marker="slice-next").click()  # the last slice: stays
    await user.should_see("Slice 6 of 6")
    _press(user, "ArrowUp")
    await user.should_see("Slice 5 of 6")
    assert _element(user, "strip-chart").options["series"][0]["markLine"]["data"] == [{"xAxis": "5"}]

    await user.should_see("Not reviewed yet.")
    user.find(marker="study-corrected").click()
    user.find("Meningioma").click()
    user.find(marker="study-correct").click()
    await user.should_see("Corrected to Meningioma by clinician")
    assert services().study_results.feedback(made.study_uid)[-1] | {"created_at": None} == {
        "username": CLINICIAN[0], "agrees": False, "corrected_label": "meningioma", "created_at": None}
    assert [(e.action, e.target) for e in services().audit.recent()][:2] == [
        ("review_study", f"study {made.study_uid}"), ("open_study", f"study {made.study_uid}")]


@pytest.mark.asyncio
async def test_a_slice_the_pacs_did_not_deliver_is_fetched_again(user: User) -> None:
    made = make_study(services().study_results, GLIOMA_RUN)
    pacs = FakePacs(made)
    pacs.failures = 1
    replace_services(pacs=pacs)
    await sign_in(user, CLINICIAN, f"/studies/{made.study_uid}")
    await user.should_see("This slice could not be loaded from the PACS.", retries=50)
    view = _element(user, "slice-view")
    assert not view.visible
    user.find(marker="slice-next").click()
    user.find(marker="slice-previous").click()
    await user.should_see("Slice 3 of 6")
    await eventually(lambda: view.visible and view.props["src"].startswith("data:image/png"), timeout=20)
    await user.should_not_see("This slice could not be loaded from the PACS.")


@pytest.mark.asyncio
async def test_study_with_two_series_opens_on_the_one_the_verdict_came_from(user: User) -> None:
    results = services().study_results
    first = make_study(results, [("notumor", 0.95), ("notumor", 0.6), ("notumor", 0.9)])
    flair = record_analysis(results, second_series(first, 4), [("notumor", 0.9), ("notumor", 0.9), ("glioma", 0.8),
                                                                ("glioma", 0.9)])
    replace_services(pacs=FakePacs(first, flair))
    await sign_in(user, CLINICIAN, f"/studies/{first.study_uid}")
    await user.should_see("Series 1 (AX T1 POST): No tumour; 3 slices, 3 counted")
    await user.should_see("Series 2 (AX T2 FLAIR): Suspected glioma; 4 slices, 4 counted")
    await user.should_see("Slice 3 of 4")
    user.find(marker="series-select").click()
    user.find("Series 1 (AX T1 POST) - No tumour").click()
    await user.should_see("of 3")
    assert texts(user, "slice-position") == ["Slice 1 of 3"]  # its most tumour-like slices lead: 2nd, then 1st


@pytest.mark.asyncio
async def test_study_not_yet_analysed_says_so_and_is_audited(user: User) -> None:
    await sign_in(user, CLINICIAN, "/studies/1.2.3.4")
    await user.should_see(marker="study-not-analysed")
    assert count(user, "slice-box") == 0
    assert services().audit.recent()[0].target == "study 1.2.3.4"


def _accessions(user: User) -> list[str]:
    return [text.split("accession ")[1].split(" |")[0] for text in texts(user, "study-details")]


def _element(user: User, marker: str) -> ui.element:
    """The element with ``marker``, shown or hidden."""
    with user:
        return next(iter(ElementFilter(marker=marker, local_scope=False)))


def _press(user: User, key: str) -> None:
    """A key press as the browser's keyboard element reports it."""
    user.find(kind=ui.keyboard).trigger("key", {"action": "keydown", "repeat": False, "altKey": False,
                                                "ctrlKey": False, "metaKey": False, "shiftKey": False,
                                                "key": key, "code": key, "location": 0})


@pytest.mark.asyncio
async def test_new_case_upload_can_store_its_dicom_files_in_the_pacs(user: User) -> None:
    pacs = FakePacs()
    replace_services(pacs=pacs)
    await sign_in(user, CLINICIAN)
    dicom = dicom_file().read_bytes()
    await upload(user, ("scan.dcm", dicom), ("notes.txt", b"not an image"))
    await user.should_see("Unsupported file type", retries=20)
    assert pacs.stored == []  # not asked to

    user.find(marker="store-in-pacs").click()
    await upload(user, ("scan.dcm", dicom), ("notes.txt", b"not an image"))
    await user.should_see("1 DICOM file stored in the PACS", retries=20)
    assert pacs.stored == [[dicom]]  # the DICOM file only, byte for byte


@pytest.mark.asyncio
async def test_real_orthanc_stores_an_upload_lists_it_and_serves_its_slices(pacs_connected, orthanc,
                                                                            user: User) -> None:
    made = mr_study(4, accession=f"REAL{time.monotonic_ns() % 10**8}")
    await sign_in(user, CLINICIAN)
    user.find(marker="store-in-pacs").click()
    await upload(user, *[(f"slice{k}.dcm", data) for k, data in enumerate(made.files().values())])
    await user.should_see("4 DICOM files stored in the PACS", retries=100)

    await user.open("/studies")  # QIDO-RS of the real PACS: there, not analysed yet
    await user.should_see(f"accession {made.qido['AccessionNumber']} | MR | 1 series, 4 instances")
    assert _row_status(user, made) == "Not analysed yet"
    await user.should_not_see("Test^Patient")

    record_analysis(services().study_results, made, GLIOMA_RUN[:4], orthanc_id=partial(orthanc_id, orthanc))
    await user.open("/studies")
    await user.should_see(f"accession {made.qido['AccessionNumber']}")
    assert _row_status(user, made) == "Suspected glioma"

    await user.open(f"/studies/{made.study_uid}")
    await user.should_see(f"accession {made.qido['AccessionNumber']}")
    await user.should_see("Slice 3 of 4")
    view = _element(user, "slice-view")
    await eventually(lambda: view.props.get("src", "").startswith("data:image/png"), timeout=30)
    assert view.visible  # decoded from Orthanc's copy of the file
    await user.should_not_see(marker="slice-missing")


def _row_status(user: User, made) -> str:
    rows = [row for row in user.find(marker="study-row").elements
            if any(made.qido["AccessionNumber"] in getattr(child, "text", "") for child in row.descendants())]
    assert len(rows) == 1
    return next(child.text for child in rows[0].descendants() if "verdict-badge" in child._markers)


@pytest.fixture(params=["orthanc", "dicomweb"])
def pacs_kind(request, pacs_connected, orthanc, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The dashboard on Orthanc as the embedded PACS, or on its DICOMweb root alone as any other PACS
    would be configured; returns the worker's settings for the same (request it before ``user``)."""
    if request.param == "orthanc":
        return {}
    monkeypatch.setenv("NEUROSCAN_PACS_KIND", "dicomweb")
    monkeypatch.setenv("NEUROSCAN_PACS_URL", f"{orthanc.url}/dicom-web")
    return {"pacs_kind": "dicomweb", "pacs_url": f"{orthanc.url}/dicom-web", "stable_age_s": "1",
            "dicomweb_poll_s": "0.5"}


@pytest.mark.asyncio
async def test_the_real_worker_s_results_show_on_the_study_page(pacs_connected, pacs_kind, orthanc, torchserve,
                                                                tmp_path, user: User) -> None:
    """The whole path: the PACS, the PACS worker and TorchServe write what the dashboard then shows;
    the slices come from the PACS by Orthanc's REST API or, for the DICOMweb kind, by WADO-RS."""
    # dated today: the DICOMweb kind's poller lists the studies of the last lookback_days
    made = mr_study(4, label="glioma", date=f"{date.today():%Y%m%d}", accession=f"WRK{time.monotonic_ns() % 10**8}")
    store_in_orthanc(orthanc, made)
    worker = start_worker(tmp_path / "worker", orthanc, torchserve, results_db=pacs_connected.study_results,
                          **pacs_kind)
    results = services().study_results
    try:
        await eventually(lambda: getattr(results.study(made.study_uid), "status", None) == "done", timeout=180)
    finally:
        worker.stop()
    result = results.study(made.study_uid)
    assert result.verdict == "glioma"  # four glioma slices of the training set

    await sign_in(user, CLINICIAN, f"/studies/{made.study_uid}")
    await user.should_see("Suspected glioma")
    await user.should_see("Series 1 (AX T1 POST): Suspected glioma; 4 slices, 4 counted")
    view, heatmap = _element(user, "slice-view"), _element(user, "slice-heatmap")
    await eventually(lambda: view.props.get("src", "").startswith("data:image/png"), timeout=30)
    assert heatmap.visible and heatmap.props["src"].startswith("data:image/png")  # the worker's Grad-CAM


@pytest.mark.asyncio
async def test_worklist_dates_are_searched_by_the_real_pacs(pacs_connected, orthanc) -> None:
    """QIDO-RS gets the date range, so a PACS full of older studies still yields the recent ones."""
    tag = time.monotonic_ns() % 10**6
    january, february = (mr_study(1, date=day, accession=f"D{tag}-{day[4:6]}") for day in ("20200105", "20200220"))
    for made in (january, february):
        store_in_orthanc(orthanc, made)
    pacs = Pacs(load_settings())

    async def accessions(**bounds) -> set[str]:
        found = {s["AccessionNumber"] for s in await pacs.search_studies(**bounds)}
        return found & {january.qido["AccessionNumber"], february.qido["AccessionNumber"]}

    assert await accessions(since=date(2020, 2, 1), until=date(2020, 2, 29)) == {f"D{tag}-02"}
    assert await accessions(until=date(2020, 1, 31)) == {f"D{tag}-01"}
    assert await accessions(since=date(2020, 1, 1)) == {f"D{tag}-01", f"D{tag}-02"}
    await pacs.aclose()


@pytest.mark.asyncio
async def test_a_shown_patient_name_stays_off_logs_and_metrics(names_shown, pacs_connected, orthanc, caplog,
                                                               user: User) -> None:
    made = mr_study(2, accession=f"NAME{time.monotonic_ns() % 10**8}")
    store_in_orthanc(orthanc, made)
    record_analysis(services().study_results, made, GLIOMA_RUN[2:4], orthanc_id=partial(orthanc_id, orthanc))
    await sign_in(user, CLINICIAN, "/studies")
    await user.should_see("Test^Patient - MR BRAIN")  # from the real PACS's QIDO-RS answer, as configured
    await user.open(f"/studies/{made.study_uid}")
    await user.should_see("Slice 1 of 2")
    await user.should_not_see("Test^Patient")  # the study page never shows it
    metrics = (await user.http_client.get("/metrics")).text
    assert "Test^Patient" not in caplog.text and "Test" not in metrics
