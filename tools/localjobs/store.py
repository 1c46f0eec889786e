"""SQLite persistence of the Jobs model: one row per thing, group, job and execution, written as they change."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Records = Mapping[tuple[str, str], Mapping[str, Any]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class Store:
    """Keeps the model's records in `path`; `save` writes only rows that changed, in one transaction.

    Each save commits before the call that caused it answers, so a process killed at any moment
    restarts with every change its clients saw acknowledged.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], str] = {}

    def load(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT kind, key, body FROM records").fetchall()
        self._written = {(kind, key): body for kind, key, body in rows}
        return {(kind, key): json.loads(body) for kind, key, body in rows}

    def save(self, records: Records) -> int:
        """Write what differs from the last save; returns the number of rows written or deleted."""
        current = {key: json.dumps(body, sort_keys=True) for key, body in records.items()}
        changed = [(key, body) for key, body in current.items() if self._written.get(key) != body]
        gone = [key for key in self._written if key not in current]
        return self._commit(changed, gone)

    def write(self, changes: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> int:
        """Write only the records given (None deletes one), as `save` would for them; returns rows written or deleted.

        For a caller that knows what changed: the cost follows the change, not the size of the whole state.
        """
        changed = []
        gone = []
        for key, body in changes.items():
            if body is None:
                if key in self._written:
                    gone.append(key)
                continue
            text = json.dumps(body, sort_keys=True)
            if self._written.get(key) != text:
                changed.append((key, text))
        return self._commit(changed, gone)

    def _commit(self, changed: list[tuple[tuple[str, str], str]], gone: list[tuple[str, str]]) -> int:
        if not changed and not gone:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO records (kind, key, body) VALUES (?, ?, ?)",
                    [(key[0], key[1], body) for key, body in changed],
                )
                self._db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", gone)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._written.update(changed)
        for key in gone:
            del self._written[key]
        return len(changed) + len(gone)

    def setting(self, name: str, default: bytes) -> bytes:
        """A value kept across restarts: stored as `default` the first time it is asked for."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, default))
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
