"""Build the SQLAlchemy engine for a metadata database URL (SQLite or PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from loopml.core.errors import ConfigurationError, ValidationError

SUPPORTED = "sqlite:///path/to/loopml.db or postgresql://user@host:5432/db"

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}

READING: ContextVar[bool] = ContextVar("loopml_store_reading", default=False)
"""Set by ``MetadataStore.reading()``: this context's transactions only read."""

MMAP_BYTES = 1024**3
"""How much of a SQLite file its connections read through a memory map instead of ``read()``
calls. A runs page filtered and sorted over 100,000 runs reads a few thousand pages at
random: with the map they come straight from the OS's cache (sqlite3, the page's main
query: 57 ms, 12-17 ms mapped). The mapping is shared by every connection and process; a
file larger than this reads its remainder the usual way."""

# Without a bound, an unroutable host makes every request hang for the OS TCP timeout.
_PG_CONNECT_TIMEOUT_S = 10
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3


def parse_url(url: str) -> URL:
    """Parse and normalize a metadata database URL; psycopg 3 drives PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"invalid database URL: expected a SQLite or PostgreSQL URL such as {SUPPORTED}",
            details={"field": "database.url"},
        ) from exc
    if parsed.drivername in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite")
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigurationError(
        f"unsupported database URL scheme {parsed.drivername!r}: supported are SQLite and "
        f"PostgreSQL (psycopg 3), for example {SUPPORTED}",
        details={"field": "database.url", "scheme": parsed.drivername},
    )


def is_memory(url: URL) -> bool:
    """Whether a SQLite URL names an in-memory database."""
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url.query)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul_text(engine: Engine) -> None:
    """Refuse text holding NUL (U+0000) on every dialect, before it reaches the database.

    PostgreSQL cannot store NUL in text at all and SQLite stores it silently; one rule in the
    one place every write passes keeps both dialects (and every entity) the same.
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _check(_conn: Any, _cursor: Any, _sql: str, parameters: Any, *_: Any) -> None:
        if _has_nul(parameters):
            raise ValidationError(
                "text values cannot contain the NUL character (U+0000); remove it and retry",
                details={"reason": "nul_character"},
            )


def _ensure_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Switch the file to WAL unless it already is (the mode is stored in the file).

    Switching needs exclusive access and SQLite answers "locked" at once instead of waiting,
    so a connection opened while another process writes retries within the busy timeout.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() in ("wal", "memory"):
        return
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def create_sqlite_engine(url: URL, *, pool_size: int, busy_timeout_ms: int) -> Engine:
    """A SQLite engine whose every connection runs in WAL mode with foreign keys on."""
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_ms / 1000}}
    if is_memory(url):
        # Each connection to :memory: would be a different, empty database.
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        kwargs["pool_size"] = pool_size
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN is deferred: a transaction that reads and then writes
        # fails at once with "database is locked" (no busy wait) when another writer committed
        # in between. loopml begins every transaction itself, below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _ensure_wal(cursor, busy_timeout_ms)
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A transaction that may write takes the write lock when it starts, waiting up to
        # busy_timeout for it. One that only reads (MetadataStore.reading) begins deferred:
        # in WAL mode it reads a snapshot and never waits on a writer, so a page is not
        # queued behind the platform's own writers. query_only makes a write in it fail at
        # once, rather than sometimes fail to upgrade its snapshot under load.
        reading = READING.get()
        if connection.info.get("query_only", False) != reading:
            connection.exec_driver_sql(f"PRAGMA query_only = {int(reading)}")
            connection.info["query_only"] = reading
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    refuse_nul_text(engine)
    return engine


def create_postgres_engine(url: URL, *, pool_size: int) -> Engine:
    """A PostgreSQL engine that checks connections before use, so a database restart costs
    one reconnect rather than one failed request per pooled connection."""
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    # A host that vanishes without closing its connections (power lost, link cut): both ends
    # probe an idle connection after KEEPALIVE_IDLE_S, and give up after KEEPALIVE_COUNT
    # unanswered probes KEEPALIVE_INTERVAL_S apart (25 s in all, where the kernel's defaults
    # wait over two hours). This side stops waiting on a vanished database; the database
    # ends a vanished platform's or worker's session, so the row locks its transaction held
    # (a claim, a lease) are released. Values in the URL win.
    for name, value in (
        ("keepalives", 1),
        ("keepalives_idle", KEEPALIVE_IDLE_S),
        ("keepalives_interval", KEEPALIVE_INTERVAL_S),
        ("keepalives_count", KEEPALIVE_COUNT),
    ):
        if name not in url.query:
            connect_args[name] = value
    given = url.query.get("options", "")
    given = given if isinstance(given, str) else " ".join(given)
    server_side = [
        f"-c tcp_keepalives_{name}={value}"
        for name, value in (
            ("idle", KEEPALIVE_IDLE_S),
            ("interval", KEEPALIVE_INTERVAL_S),
            ("count", KEEPALIVE_COUNT),
        )
        if f"tcp_keepalives_{name}" not in given
    ]
    if server_side:  # after the URL's own options (a search_path, say), which it keeps
        connect_args["options"] = " ".join([given, *server_side]).strip()
    engine = create_engine(url, pool_size=pool_size, pool_pre_ping=True, connect_args=connect_args)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # As on SQLite: a transaction of MetadataStore.reading() only reads, and a write
        # in it fails at once (SQLSTATE 25006) instead of being committed by a page.
        if READING.get():
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    refuse_nul_text(engine)
    return engine
