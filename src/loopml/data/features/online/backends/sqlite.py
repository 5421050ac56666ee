"""The embedded online store: one SQLite file (WAL), one row per (namespace, entity).

The newer-wins rule is the upsert's ``WHERE``: one statement, so concurrent writers cannot
interleave a read and a write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from loopml.core.features import SqliteOnlineStoreConfig
from loopml.data.features.online.base import OnlineRow, OnlineStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    ns TEXT NOT NULL,
    entity TEXT NOT NULL,
    event_us INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ns, entity)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO online_features (ns, entity, event_us, value) VALUES (?, ?, ?, ?)
ON CONFLICT (ns, entity) DO UPDATE SET event_us = excluded.event_us, value = excluded.value
WHERE excluded.event_us >= online_features.event_us
"""
# SQLite's default limit of bound parameters is 32766; stay well under it.
_READ_CHUNK = 500


class SqliteOnlineStore(OnlineStore):
    """The online store in one SQLite file."""

    def __init__(self, config: SqliteOnlineStoreConfig, default_path: Path) -> None:
        path = config.path or default_path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("PRAGMA busy_timeout=5000")
        self._con.execute(_SCHEMA)

    def write_batch(self, namespace: str, rows: Sequence[OnlineRow]) -> None:
        params = [(namespace, r.entity, r.event_us, r.value) for r in rows]
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(_UPSERT, params)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def read_batch(self, namespace: str, entities: Sequence[str]) -> list[OnlineRow | None]:
        found: dict[str, OnlineRow] = {}
        with self._lock:
            for start in range(0, len(entities), _READ_CHUNK):
                chunk = list(entities[start : start + _READ_CHUNK])
                marks = ",".join("?" * len(chunk))
                cursor = self._con.execute(
                    "SELECT entity, event_us, value FROM online_features "  # noqa: S608
                    f"WHERE ns = ? AND entity IN ({marks})",
                    [namespace, *chunk],
                )
                for entity, event_us, value in cursor:
                    found[entity] = OnlineRow(entity, event_us, bytes(value))
        return [found.get(entity) for entity in entities]

    def delete_namespace(self, namespace: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM online_features WHERE ns = ?", (namespace,))

    def first_key(self) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT ns, entity FROM online_features LIMIT 1").fetchone()
        return None if row is None else f"{row[0]}:{row[1]}"

    def close(self) -> None:
        with self._lock:
            self._con.close()
