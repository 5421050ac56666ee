"""Build the SQLAlchemy engine for a metadata database URL (SQLite or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from loopml.core.errors import ConfigurationError

SUPPORTED = "sqlite:///path/to/loopml.db or postgresql://user@host:5432/db"

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}

# Without a bound, an unroutable host makes every request hang for the OS TCP timeout.
_PG_CONNECT_TIMEOUT_S = 10


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
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Take the write lock when the transaction starts, waiting up to busy_timeout for it;
        # in WAL mode readers outside transactions are never blocked by it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_postgres_engine(url: URL, *, pool_size: int) -> Engine:
    """A PostgreSQL engine that checks connections before use, so a database restart costs
    one reconnect rather than one failed request per pooled connection."""
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    return create_engine(url, pool_size=pool_size, pool_pre_ping=True, connect_args=connect_args)
