"""Whole-database copies for backup and restore.

A backup always holds the metadata as one SQLite file at the source's schema revision:
SQLite's online backup API copies an embedded database page by page inside one read
transaction, and a PostgreSQL database is copied row by row inside one ``REPEATABLE READ``
transaction into a fresh SQLite file. The same row copy loads such a file into an empty
PostgreSQL database, so one backup format restores into either dialect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
)

from loopml.core.errors import ConflictError
from loopml.store import _migrate
from loopml.store._errors import translated
from loopml.store.db import MetadataStore
from loopml.store.orm import Base

_BATCH_ROWS = 5_000


def snapshot_to_file(store: MetadataStore, dest: Path) -> str:
    """Write one transaction-consistent copy of ``store``'s database to the new SQLite
    file ``dest`` while others keep writing; returns the copy's schema revision.

    Raises:
        ConflictError: a PostgreSQL database whose schema is not at this loopml's head
            (run ``loopml db upgrade`` first), or a database with no schema at all.
    """
    if store.dialect == "sqlite":
        source = Path(str(store._parsed.database))
        if not source.is_file():
            raise ConflictError(
                f"no database at {source}: nothing to back up", details={"database": str(source)}
            )
        sqlite_file_backup(source, dest)
    else:
        _export_postgres(store, dest)
    revision = file_revision(dest)
    if revision is None:
        raise ConflictError(
            f"the database {store.safe_url} has no loopml schema: nothing to back up",
            details={"database": store.safe_url},
        )
    return revision


def sqlite_file_backup(source: Path, dest: Path) -> None:
    """Copy the SQLite file ``source`` to ``dest`` with SQLite's online backup API: a
    consistent copy while other connections write."""
    # pages=-1 (the default) copies every page in one step, inside one read transaction:
    # in WAL mode writers go on meanwhile and the copy is the database as of its start.
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
        # A standalone file: readable without a -wal beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def _export_postgres(store: MetadataStore, dest: Path) -> None:
    head = store.head_revision()
    target = create_engine(f"sqlite:///{dest}")
    try:
        with translated(store.dialect), store._engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                revision = _migrate.current_revision(conn)
                if revision != head:
                    raise ConflictError(
                        f"the database {store.safe_url} is at schema revision {revision}, "
                        f"this loopml at {head}: run `loopml db upgrade` before the backup",
                        details={"current": revision, "head": head},
                    )
                with target.begin() as out:
                    _migrate.upgrade_on(out)
                    copy_rows(conn, out)
    finally:
        target.dispose()


def file_revision(path: Path) -> str | None:
    """The schema revision of a SQLite file, ``None`` when it has no loopml schema."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return _migrate.current_revision(conn)
    finally:
        engine.dispose()


def lake_table_versions(path: Path) -> list[tuple[str, str, int]]:
    """``(project_id, table_id, version)`` of every lake table in the SQLite file ``path``
    (``-1``: no commit recorded yet)."""
    table = Base.metadata.tables["lake_tables"]
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            query = select(table.c.project_id, table.c.id, table.c.version)
            return [(str(p), str(t), int(v)) for p, t, v in conn.execute(query)]
    finally:
        engine.dispose()


def load_file(source: Path, store: MetadataStore) -> int:
    """Load the SQLite file ``source`` (a backup's metadata) into the empty database of
    ``store``, in one transaction: nothing is left behind when it fails. Returns the rows
    copied.

    Raises:
        ConflictError: ``store`` already holds tables, or ``source`` is at another schema
            revision than this loopml's head (restore it with the loopml that took it).
    """
    head = store.head_revision()
    revision = file_revision(source)
    if revision != head:
        raise ConflictError(
            f"the backup's database is at schema revision {revision}, this loopml at {head}: "
            "restore it with the loopml version that took it (or onto SQLite, then run "
            "`loopml db upgrade`)",
            details={"backup": revision, "head": head},
        )
    existing = database_tables(store)
    if existing:
        raise ConflictError(
            f"the database {store.safe_url} is not empty (tables: "
            f"{', '.join(existing[:5])}{', ...' if len(existing) > 5 else ''}): restore into an "
            "empty database",
            details={"tables": existing},
        )
    engine = create_engine(f"sqlite:///{source}")
    try:
        with (
            engine.connect() as src,
            translated(store.dialect),
            store._engine.begin() as out,
        ):
            _migrate.upgrade_on(out)
            count = copy_rows(src, out)
            if out.dialect.name == "postgresql":
                _reset_sequences(out)
            return count
    finally:
        engine.dispose()


def database_tables(store: MetadataStore) -> list[str]:
    """The names of the tables in ``store``'s database (its schema, on PostgreSQL)."""
    with translated(store.dialect), store._engine.connect() as conn:
        return sorted(inspect(conn).get_table_names())


def copy_rows(src: Connection, out: Connection) -> int:
    """Copy every row of loopml's tables from ``src`` to ``out`` (both at the same schema
    revision), replacing what ``out`` held; returns the rows copied."""
    tables = Base.metadata.sorted_tables
    for table in reversed(tables):
        out.execute(delete(table))
    count = 0
    for table in tables:
        result = src.execution_options(yield_per=_BATCH_ROWS).execute(select(table))
        for batch in _batches(_ordered(table, result.mappings())):
            out.execute(table.insert(), batch)
            count += len(batch)
    return count


def _ordered(table: Table, rows: Iterable[RowMapping]) -> Iterator[dict[str, Any]]:
    """Rows in an order their own table's foreign keys accept: a parent run before its
    children (the one self-reference of the schema)."""
    keys = [
        (fk.parent.name, fk.column.name) for fk in table.foreign_keys if fk.column.table is table
    ]
    if not keys:
        yield from (dict(row) for row in rows)
        return
    pending = [dict(row) for row in rows]
    placed: set[Any] = set()
    while pending:
        ready = [row for row in pending if _parents_placed(row, keys, placed)] or pending
        for row in ready:
            placed.update(row[ref] for _, ref in keys)
            yield row
        chosen = {id(row) for row in ready}
        pending = [row for row in pending if id(row) not in chosen]


def _parents_placed(row: dict[str, Any], keys: list[tuple[str, str]], placed: set[Any]) -> bool:
    # A cycle no constraint allows leaves nothing ready: the caller then inserts the rest
    # and lets the database name the violation.
    return all(row[column] is None or row[column] in placed for column, _ in keys)


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _reset_sequences(conn: Connection) -> None:
    """Move PostgreSQL's id sequences past the ids copied in, so new rows do not collide."""
    for table in Base.metadata.sorted_tables:
        for column in table.primary_key.columns:
            if column.autoincrement is not True:
                continue
            top = conn.execute(select(func.max(column))).scalar()
            if top is None:
                continue
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence(:table, :column), :top)"),
                {"table": table.name, "column": column.name, "top": int(top)},
            )
