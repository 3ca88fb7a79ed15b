"""The case store: every analysis in one SQLite table, plus the clinician's verdict on it.

SQLite is the embedded default so a fresh install needs no database server. Each call opens a
short-lived connection: calls are rare (one per analysis or search) and this keeps the store safe
to use from the worker threads NiceGUI runs I/O in. Only the 224-pixel model view, a thumbnail and
the heatmap are kept (not the upload), and never a file name, which may carry a patient's name.
"""

import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from neuroscan.classes import CLASSES
from neuroscan.sqlite import create, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    username TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    image BLOB NOT NULL,
    heatmap BLOB,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    model_version TEXT NOT NULL,
    result TEXT NOT NULL,
    feedback_agrees INTEGER,
    corrected_label TEXT,
    feedback_by TEXT,
    feedback_at TEXT
);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at);
CREATE INDEX IF NOT EXISTS cases_label ON cases (label);
CREATE INDEX IF NOT EXISTS cases_sha ON cases (image_sha256);
"""


@dataclass
class Case:
    """One stored analysis; ``result`` is TorchServe's JSON answer without the heatmap."""

    id: int
    created_at: datetime
    username: str
    image_sha256: str
    thumbnail: bytes
    image: bytes
    heatmap: bytes | None
    label: str
    confidence: float
    model_version: str
    result: dict[str, Any] = field(default_factory=dict)
    feedback_agrees: bool | None = None
    corrected_label: str | None = None
    feedback_by: str | None = None


@dataclass(frozen=True)
class CaseQuery:
    """History filters; empty fields do not filter."""

    text: str = ""
    label: str | None = None
    since: date | None = None
    until: date | None = None
    limit: int = 200


class CaseStore:
    """Create, find and annotate cases in the SQLite file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        create(self.path, _SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def add(self, *, username: str, image_sha256: str, thumbnail: bytes, image: bytes,
            heatmap: bytes | None, result: dict[str, Any]) -> int:
        """Store one analysis and return its case number."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO cases (created_at, username, image_sha256, thumbnail, image, heatmap, label,"
                " confidence, model_version, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (datetime.now(UTC).isoformat(timespec="seconds"), username, image_sha256, thumbnail,
                 image, heatmap, result["label"], float(result["confidence"]), str(result["model_version"]),
                 json.dumps(result)),
            )
            return int(cursor.lastrowid)

    def get(self, case_id: int) -> Case | None:
        """One case by number, or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        return None if row is None else _case(row)

    def search(self, query: CaseQuery) -> list[Case]:
        """Newest first; ``text`` matches the user, the SHA-256 prefix, the model version or a case number."""
        clauses, params = [], []
        if query.text.strip():
            text = query.text.strip()
            clauses.append("(username LIKE ? OR image_sha256 LIKE ? OR model_version LIKE ? OR CAST(id AS TEXT) = ?)")
            params += [f"%{text}%", f"{text.lower()}%", f"%{text}%", text.lstrip("#")]
        if query.label:
            clauses.append("label = ?")
            params.append(query.label)
        if query.since:
            clauses.append("created_at >= ?")
            params.append(_day_start(query.since))
        if query.until:
            clauses.append("created_at < ?")
            params.append(_day_start(query.until + timedelta(days=1)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM cases {where} ORDER BY id DESC LIMIT ?", (*params, query.limit))
            return [_case(row) for row in rows]

    def record_feedback(self, case_id: int, *, username: str, agrees: bool, corrected_label: str | None) -> None:
        """Keep the clinician's verdict (a corrected label is training material for the next model)."""
        if not agrees and corrected_label not in CLASSES:
            raise ValueError(f"a corrected label must be one of {CLASSES}")
        with self._connect() as db:
            db.execute(
                "UPDATE cases SET feedback_agrees = ?, corrected_label = ?, feedback_by = ?, feedback_at = ?"
                " WHERE id = ?",
                (int(agrees), None if agrees else corrected_label, username,
                 datetime.now(UTC).isoformat(timespec="seconds"), case_id),
            )


def _day_start(day: date) -> str:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat(timespec="seconds")


def _case(row: sqlite3.Row) -> Case:
    agrees = row["feedback_agrees"]
    return Case(
        id=row["id"], created_at=datetime.fromisoformat(row["created_at"]), username=row["username"],
        image_sha256=row["image_sha256"], thumbnail=row["thumbnail"], image=row["image"], heatmap=row["heatmap"],
        label=row["label"], confidence=row["confidence"], model_version=row["model_version"],
        result=json.loads(row["result"]), feedback_agrees=None if agrees is None else bool(agrees),
        corrected_label=row["corrected_label"], feedback_by=row["feedback_by"],
    )
