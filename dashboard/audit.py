"""The audit log: who opened or reviewed which case or study, who signed in, and when.

An audit trail is only worth something if it cannot be rewritten afterwards, so the table is
append-only in the database itself: triggers refuse every UPDATE and DELETE, whoever connects
(the dashboard, a script, a curious operator with the sqlite3 shell). It lives in the case
database so a backup of one file keeps both. Entries name accounts, case numbers and study UIDs,
never a patient.
"""

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from neuroscan.sqlite import create, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    client TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# What an entry records; the admin page filters on these.
ACTIONS: dict[str, str] = {
    "sign_in": "Signed in",
    "sign_in_locked": "Sign-in locked",
    "open_case": "Opened case",
    "review_case": "Reviewed case",
    "open_study": "Opened study",
    "review_study": "Reviewed study",
}


@dataclass(frozen=True)
class AuditEntry:
    """One line of the trail; ``target`` is ``case 12``, ``study 1.2.840...`` or empty."""

    id: int
    at: datetime
    username: str
    action: str
    target: str
    client: str


class AuditLog:
    """Append to and read the ``audit`` table of the SQLite file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        create(self.path, _SCHEMA)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def record(self, username: str, action: str, target: str = "", client: str = "") -> None:
        """Append one entry stamped with the current UTC time."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        with self._connect() as db:
            db.execute("INSERT INTO audit (at, username, action, target, client) VALUES (?, ?, ?, ?, ?)",
                       (datetime.now(UTC).isoformat(timespec="seconds"), username, action, target, client))

    def recent(self, *, username: str = "", action: str | None = None, target: str = "",
               limit: int = 500) -> list[AuditEntry]:
        """Newest first; ``username`` matches exactly, ``target`` as a substring."""
        clauses, params = [], []
        if username.strip():
            clauses.append("username = ?")
            params.append(username.strip())
        if action:
            clauses.append("action = ?")
            params.append(action)
        if target.strip():
            clauses.append("target LIKE ?")
            params.append(f"%{target.strip()}%")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
            return [AuditEntry(row["id"], datetime.fromisoformat(row["at"]), row["username"], row["action"],
                               row["target"], row["client"]) for row in rows]
