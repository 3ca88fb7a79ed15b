"""The one way NeuroScan's SQLite files are opened: short-lived connections, one transaction each.

The case store, the audit log (dashboard) and the study results (PACS worker and dashboard) are
each a small SQLite file written from several threads or processes; a connection per call, with
its block committed on success and rolled back on error, keeps them safe without a server.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def transaction(path: Path, timeout_s: float = 10.0) -> Iterator[sqlite3.Connection]:
    """A connection to ``path`` (rows as :class:`sqlite3.Row`) whose block is one transaction."""
    db = sqlite3.connect(path, timeout=timeout_s)
    db.row_factory = sqlite3.Row
    try:
        with db:
            yield db
    finally:
        db.close()


def create(path: Path, schema: str, wal: bool = False) -> None:
    """Make ``path``'s folder and apply ``schema`` (idempotent ``CREATE ... IF NOT EXISTS``);
    ``wal`` lets readers in other processes read while one writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with transaction(path) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
