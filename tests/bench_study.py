"""Study throughput: a 150-slice MR series C-STOREd into Orthanc, analysed, its SR stored back.

    python tests/bench_study.py [--slices 150] [--repeats 3]      (make bench-study)

Starts its own TorchServe (the built archive), Orthanc and PACS worker on free 127.0.0.1 ports,
sends the series with dcmtk's storescu as a modality would, and times it from the first byte sent
to the results store saying "done" (the SR and PDF are in the study by then). The parts come from
the worker's log line, after Orthanc's StableAge (config/orthanc.json), the quiet time after which
it calls a study complete: fetch (with the wait for the slices classified as they arrived, during
that quiet time), inference (what was left) and write-back (SR, PDF, STOW-RS); answered_ahead says
how many slices were classified as they arrived, before_stable whether the study was analysed as
soon as its series were complete by their headers (ImagesInAcquisition), not at StableStudy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from handler.wait_ready import wait_ready
from neuroscan.study_results import StudyResults
from pacs.orthanc import TEMPLATE, environment, runtime_config
from tests.dicom_series import mr_series, study_attributes, to_bytes
from tests.orthanc_fixture import Orthanc, start_worker, wait_until
from tests.torchserve_fixture import (
    TorchServe,
    free_ports,
    start_torchserve,
    stop_torchserve,
    write_config,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/brain-tumor-mri/Training"


def series_files(folder: Path, slices: int, accession: str) -> tuple[str, list[Path]]:
    """One study with one axial series of ``slices`` training slices (cycled if needed)."""
    images = sorted((DATA / "glioma").glob("*.jpg"))
    study = study_attributes(accession=accession)
    folder.mkdir(parents=True)
    paths = []
    for ds in mr_series(study, [images[i % len(images)] for i in range(slices)], 1, "AX T1 POST", spacing=1.0):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return str(study.StudyInstanceUID), paths


def analysed_record(log: Path, study_uid: str) -> dict:
    """The worker's "study ... analysed" log line for this study."""
    for line in log.read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("message", "").startswith(f"study {study_uid} analysed"):
            return record
    return {}


def run_once(orthanc: Orthanc, worker, home: Path, slices: int, index: int) -> dict:
    study_uid, files = series_files(home / f"study{index}", slices, f"BENCH{index}")
    results = StudyResults(worker.results_db)
    started = time.perf_counter()
    orthanc.store(files)
    stored = time.perf_counter()
    wait_until(lambda: getattr(results.study(study_uid), "status", None) == "done", timeout=300, step=0.05)
    done = time.perf_counter()
    record = analysed_record(worker.log, study_uid)
    return {"slices": slices, "total_s": round(done - started, 2), "c_store_s": round(stored - started, 2),
            **{f"{k}_s": v for k, v in record.get("timings", {}).items()},
            "answered_ahead": record.get("answered_ahead"), "before_stable": record.get("before_stable")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench-study needs the training images at {DATA}")
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        home = Path(tmp)
        ts_home = home / "ts"
        (ts_home / "tmp").mkdir(parents=True)
        ports = free_ports(5)
        env = start_torchserve(ts_home, write_config(ts_home, ports), ts_home / "store", "brain_tumor=brain_tumor.mar")
        server = TorchServe(*(f"http://127.0.0.1:{p}" for p in ports[:3]), key_file=ts_home / "key_file.json",
                            home=ts_home)
        http_port, dicom_port = free_ports(2)
        config = runtime_config(home / "orthanc", http_port, dicom_port)
        orthanc_process = subprocess.Popen(["Orthanc", str(config)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, env=environment())
        orthanc = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, home / "orthanc")
        worker = None
        try:
            wait_ready(server.management_url, server.model_name, server.key_file, timeout=240)
            wait_until(lambda: _up(orthanc), timeout=60)
            worker = start_worker(home / "worker", orthanc, server)
            runs = [run_once(orthanc, worker, home, args.slices, i) for i in range(args.repeats)]
        finally:
            if worker is not None:
                worker.stop()
            orthanc_process.terminate()
            stop_torchserve(ts_home, env)
    stable_age = json.loads(TEMPLATE.read_text())["StableAge"]
    print(f"study throughput ({args.slices}-slice MR series, Orthanc StableAge {stable_age} s, goal <= 5 s):")
    for run in runs:
        print("  " + "  ".join(f"{k} {v}" for k, v in run.items()))
    totals = sorted(r["total_s"] for r in runs)
    print(f"end to end: best {totals[0]} s, median {statistics.median(totals):.2f} s, worst {totals[-1]} s "
          f"({sum(t <= 5 for t in totals)} of {len(totals)} runs within the 5 s goal)")


def _up(orthanc: Orthanc) -> bool:
    try:
        return orthanc.get("/system").status_code == 200
    except Exception:  # noqa: BLE001 - not up yet, whatever the reason
        return False


if __name__ == "__main__":
    main()
