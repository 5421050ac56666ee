"""Rows for upgrade tests: a database brought to a revision by Alembic, a SQLite database's
rows copied into another database table by table, and a made-up row for any reflected table.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy import (
    table as sql_table,
)

from loopml.store._engine import create_sqlite_engine, parse_url
from loopml.store._migrate import alembic_config, script_directory


def engine_for(url: str) -> Engine:
    """An engine for a loopml database URL as loopml opens it: psycopg 3 for PostgreSQL;
    SQLite's connections with foreign keys on, so a migration that rebuilds a referenced
    table fails here as it does on a user's database."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return create_sqlite_engine(parsed, pool_size=1, busy_timeout_ms=5_000)
    return create_engine(parsed)


def upgrade_to(url: str, revision: str) -> None:
    """Bring the database at ``url`` to ``revision`` with Alembic, as that release left it."""
    config = alembic_config()
    scripts = _scripts()
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            # command.upgrade, with the scripts read once per process rather than per call
            with EnvironmentContext(
                config,
                scripts,
                fn=lambda rev, _: scripts._upgrade_revs(revision, rev),
                destination_rev=revision,
            ):
                scripts.run_env()
    finally:
        engine.dispose()


@functools.cache
def _scripts() -> ScriptDirectory:
    return script_directory()


def reflected(conn: Connection) -> MetaData:
    """The database's tables as they are (not as today's ORM says), alembic_version aside."""
    metadata = MetaData()
    metadata.reflect(conn)
    metadata.remove(metadata.tables["alembic_version"])
    return metadata


def counts(url: str) -> dict[str, int]:
    """Rows per table of the database at ``url``."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names()) - {"alembic_version"}
            return {
                name: conn.execute(select(func.count()).select_from(sql_table(name))).scalar_one()
                for name in sorted(names)
            }
    finally:
        engine.dispose()


def copy_rows(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every row of ``source_url`` into the same tables of ``target_url`` (at the same
    revision, empty), parents first; PostgreSQL's sequences then continue after the ids
    copied. Returns the rows copied per table."""
    source, target = engine_for(source_url), engine_for(target_url)
    copied: dict[str, int] = {}
    try:
        with source.connect() as read, target.begin() as write:
            into = reflected(write)
            # Rows the migrations seed (the default project) come again from the source.
            for table in reversed(into.sorted_tables):
                write.execute(table.delete())
            for table in into.sorted_tables:
                rows = [dict(r._mapping) for r in read.execute(select(table)).all()]
                if rows:
                    write.execute(table.insert(), rows)
                copied[table.name] = len(rows)
            if write.dialect.name == "postgresql":
                _continue_sequences(write, into)
    finally:
        source.dispose()
        target.dispose()
    return copied


def _continue_sequences(conn: Connection, metadata: MetaData) -> None:
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"),
                {"t": table.name, "c": column.name},
            ).scalar()
            if sequence is not None:
                conn.execute(
                    text(
                        f"SELECT setval('{sequence}', "
                        f'COALESCE((SELECT MAX("{column.name}") FROM "{table.name}"), 0) + 1, '
                        "false)"
                    )
                )


def fill_every_table(conn: Connection, round_: int = 1) -> dict[str, int]:
    """Insert one made-up row into each table of the database (parents first, each foreign
    key pointing at the row inserted in its parent); ``round_`` keeps a later call's unique
    values apart from an earlier one's. Returns rows per table after."""
    metadata = reflected(conn)
    keys: dict[tuple[str, str], Any] = {}
    for table in metadata.sorted_tables:
        row = {c.name: _value(table, c, keys, round_) for c in table.columns}
        row = {k: v for k, v in row.items() if v is not _SKIP}
        result = conn.execute(table.insert().values(row))
        inserted = result.inserted_primary_key or ()
        for column, value in zip(table.primary_key.columns, inserted, strict=False):
            keys[(table.name, column.name)] = value
        for name, value in row.items():
            keys.setdefault((table.name, name), value)
    return {
        name: conn.execute(select(func.count()).select_from(table)).scalar_one()
        for name, table in metadata.tables.items()
    }


_SKIP = object()
_NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _value(table: Table, column: Any, keys: dict[tuple[str, str], Any], round_: int) -> Any:
    for fk in column.foreign_keys:  # a self-reference (a run's parent) stays NULL
        return keys.get((fk.column.table.name, fk.column.name))
    if column.primary_key and isinstance(column.type, Integer) and column.autoincrement:
        return _SKIP
    return _made_up(column, f"{round_}-{table.name[:20]}-{column.name[:20]}", round_)


def _made_up(column: Any, label: str, round_: int) -> Any:
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return round_
    if isinstance(kind, (Float, Numeric)):
        return 1.5
    if isinstance(kind, DateTime):
        return _NOW if getattr(kind, "timezone", False) else _NOW.replace(tzinfo=None)
    if isinstance(kind, Date):
        return _NOW.date()
    if isinstance(kind, JSON):
        return {"k": "v"}
    if isinstance(kind, LargeBinary):
        return b"\x00\x01"
    if isinstance(kind, String):
        length = kind.length or 64
        return (label if length >= len(label) else uuid.uuid4().hex)[:length]
    return label
