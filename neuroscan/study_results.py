"""What the PACS worker found in each study, kept where the dashboard can read it (SQLite).

The worker writes, the dashboard reads and adds the clinician's feedback; both open short-lived
connections (WAL mode), so the two processes never hold the file locked for long. Rows are keyed
by model version: a new model analyses every series again, an old answer is never overwritten by
a new model's. Nothing identifying is stored: UIDs, Orthanc ids, verdicts and the model's answers.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuroscan.sqlite import create, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS worker_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series_results (
    series_uid TEXT NOT NULL, model_version TEXT NOT NULL, study_uid TEXT NOT NULL,
    status TEXT NOT NULL, verdict TEXT, summary TEXT NOT NULL DEFAULT '{}', slices TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
    PRIMARY KEY (series_uid, model_version)
);
CREATE INDEX IF NOT EXISTS series_study ON series_results (study_uid);
CREATE TABLE IF NOT EXISTS heatmaps (
    series_uid TEXT NOT NULL, model_version TEXT NOT NULL, instance_uid TEXT NOT NULL, png BLOB NOT NULL,
    PRIMARY KEY (series_uid, model_version, instance_uid)
);
CREATE TABLE IF NOT EXISTS study_results (
    study_uid TEXT NOT NULL, model_version TEXT NOT NULL, orthanc_id TEXT NOT NULL, status TEXT NOT NULL,
    verdict TEXT, notes TEXT NOT NULL DEFAULT '[]', report_uids TEXT NOT NULL DEFAULT '[]', updated_at TEXT NOT NULL,
    PRIMARY KEY (study_uid, model_version)
);
CREATE TABLE IF NOT EXISTS study_feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, username TEXT NOT NULL,
    agrees INTEGER NOT NULL, corrected_label TEXT, created_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class SeriesResult:
    """One analysed (or failed, or pending) series; ``slices`` are the ordered per-slice answers."""

    series_uid: str
    study_uid: str
    model_version: str
    status: str
    verdict: str | None
    summary: dict[str, Any]
    slices: list[dict[str, Any]]
    attempts: int
    updated_at: str


@dataclass
class StudyResult:
    """A study's verdict for one model version, with notes on what was not analysed and why."""

    study_uid: str
    model_version: str
    orthanc_id: str
    status: str
    verdict: str | None
    notes: list[str]
    report_uids: list[str]
    updated_at: str
    series: list[SeriesResult] = field(default_factory=list)


class StudyResults:
    """The results store at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        create(self.path, _SCHEMA, wal=True)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, timeout_s=30)

    # ---- the worker's position in Orthanc's change feed -------------------------------------
    def last_change(self) -> int:
        with self._connect() as db:
            row = db.execute("SELECT value FROM worker_state WHERE key = 'last_change'").fetchone()
        return int(row["value"]) if row else 0

    def set_last_change(self, seq: int) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO worker_state VALUES ('last_change', ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(seq),))

    # ---- series ------------------------------------------------------------------------------
    def series_result(self, series_uid: str, model_version: str) -> SeriesResult | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM series_results WHERE series_uid = ? AND model_version = ?",
                             (series_uid, model_version)).fetchone()
        return _series(row) if row else None

    def start_series(self, study_uid: str, series_uid: str, model_version: str) -> None:
        """Mark a series pending and count the attempt (a restart mid-series shows as attempt 2)."""
        with self._connect() as db:
            db.execute("INSERT INTO series_results (series_uid, model_version, study_uid, status, attempts, updated_at) "
                       "VALUES (?, ?, ?, 'pending', 1, ?) ON CONFLICT(series_uid, model_version) DO UPDATE SET "
                       "status = 'pending', attempts = attempts + 1, updated_at = excluded.updated_at",
                       (series_uid, model_version, study_uid, _now()))

    def finish_series(self, series_uid: str, model_version: str, status: str, verdict: str | None,
                      summary: dict[str, Any], slices: list[dict[str, Any]], heatmaps: dict[str, bytes]) -> None:
        """Store a series' outcome and its heatmaps in one transaction."""
        with self._connect() as db:
            db.execute("UPDATE series_results SET status = ?, verdict = ?, summary = ?, slices = ?, updated_at = ? "
                       "WHERE series_uid = ? AND model_version = ?",
                       (status, verdict, json.dumps(summary), json.dumps(slices), _now(), series_uid, model_version))
            db.executemany("INSERT OR REPLACE INTO heatmaps VALUES (?, ?, ?, ?)",
                           [(series_uid, model_version, uid, png) for uid, png in heatmaps.items()])

    def heatmap(self, series_uid: str, model_version: str, instance_uid: str) -> bytes | None:
        with self._connect() as db:
            row = db.execute("SELECT png FROM heatmaps WHERE series_uid = ? AND model_version = ? AND instance_uid = ?",
                             (series_uid, model_version, instance_uid)).fetchone()
        return bytes(row["png"]) if row else None

    # ---- studies -----------------------------------------------------------------------------
    def save_study(self, study_uid: str, model_version: str, orthanc_id: str, status: str, verdict: str | None,
                   notes: list[str], report_uids: list[str] | None = None) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO study_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (study_uid, model_version, orthanc_id, status, verdict, json.dumps(notes),
                        json.dumps(report_uids or []), _now()))

    def study(self, study_uid: str, model_version: str | None = None) -> StudyResult | None:
        """A study's newest result (or that of ``model_version``), with its series."""
        query = "SELECT * FROM study_results WHERE study_uid = ?" + (" AND model_version = ?" if model_version else "")
        with self._connect() as db:
            row = db.execute(query + " ORDER BY updated_at DESC LIMIT 1",
                             (study_uid, model_version) if model_version else (study_uid,)).fetchone()
            if row is None:
                return None
            series = db.execute("SELECT * FROM series_results WHERE study_uid = ? AND model_version = ? "
                                "ORDER BY series_uid", (study_uid, row["model_version"])).fetchall()
        result = _study(row)
        result.series = [_series(r) for r in series]
        return result

    def studies(self) -> dict[str, StudyResult]:
        """Every study's newest result, by StudyInstanceUID (series not loaded)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM study_results ORDER BY updated_at").fetchall()
        return {row["study_uid"]: _study(row) for row in rows}

    # ---- the clinician's word ------------------------------------------------------------------
    def record_feedback(self, study_uid: str, username: str, agrees: bool, corrected_label: str | None) -> None:
        """Append the clinician's agreement or corrected study label (kept for future training)."""
        with self._connect() as db:
            db.execute("INSERT INTO study_feedback (study_uid, username, agrees, corrected_label, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (study_uid, username, int(agrees), corrected_label, _now()))

    def feedback(self, study_uid: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT username, agrees, corrected_label, created_at FROM study_feedback "
                              "WHERE study_uid = ? ORDER BY id", (study_uid,)).fetchall()
        return [dict(row) | {"agrees": bool(row["agrees"])} for row in rows]


def _study(row: sqlite3.Row) -> StudyResult:
    return StudyResult(row["study_uid"], row["model_version"], row["orthanc_id"], row["status"], row["verdict"],
                       json.loads(row["notes"]), json.loads(row["report_uids"]), row["updated_at"])


def _series(row: sqlite3.Row) -> SeriesResult:
    return SeriesResult(row["series_uid"], row["study_uid"], row["model_version"], row["status"], row["verdict"],
                        json.loads(row["summary"]), json.loads(row["slices"]), row["attempts"], row["updated_at"])
