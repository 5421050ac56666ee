"""Turn database errors into loopml errors, so nothing above the store sees SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from loopml.core.disk import disk_full
from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    LoopmlError,
    ServiceUnavailableError,
    ValidationError,
    WroteWhileReadingError,
)

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_UNIQUE_VIOLATION = "23505"
_PG_UNDEFINED_TABLE = "42P01"
_PG_UNDEFINED_COLUMN = "42703"
_PG_READ_ONLY_TRANSACTION = "25006"
_PG_DISK_FULL = "53100"

_SCHEMA_HINT = (
    "the metadata database schema is missing or out of date: run `loopml db upgrade` "
    "(or start with `loopml up --upgrade`)"
)


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _constraint(exc: sa_exc.DBAPIError) -> str | None:
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def is_unique_violation(exc: sa_exc.DBAPIError) -> bool:
    """Whether ``exc`` is a unique or primary-key violation, on SQLite or PostgreSQL."""
    if _sqlstate(exc) == _PG_UNIQUE_VIOLATION:
        return True
    # sqlite3 exposes the extended result code name since Python 3.11.
    name = getattr(exc.orig, "sqlite_errorname", "")
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return True
    return "UNIQUE constraint failed" in str(exc.orig)


def add_unique(session: Session, row: object, exists: LoopmlError) -> None:
    """Insert ``row`` now; if a unique key is taken, raise ``exists`` instead.

    Callers check for the name first, for a clear error in the common case; this catches the
    race where another transaction inserted the same key between that check and this insert.
    """
    session.add(row)
    try:
        session.flush()
    except sa_exc.IntegrityError as exc:
        if is_unique_violation(exc):
            raise exists from exc
        raise


def wrote_while_reading(exc: sa_exc.SQLAlchemyError) -> bool:
    """Whether ``exc`` is a write refused inside ``MetadataStore.reading()``: SQLite's
    "attempt to write a readonly database", PostgreSQL's read-only transaction."""
    if isinstance(exc, sa_exc.DBAPIError) and _sqlstate(exc) == _PG_READ_ONLY_TRANSACTION:
        return True
    return "readonly database" in str(getattr(exc, "orig", ""))


def _is_missing_schema(exc: sa_exc.DBAPIError) -> bool:
    if _sqlstate(exc) in (_PG_UNDEFINED_TABLE, _PG_UNDEFINED_COLUMN):
        return True
    text = str(exc.orig)
    return text.startswith(("no such table", "no such column"))


def _is_disk_full(exc: sa_exc.SQLAlchemyError) -> bool:
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if _sqlstate(exc) == _PG_DISK_FULL:
        return True
    return getattr(exc.orig, "sqlite_errorname", "") == "SQLITE_FULL"


def translate(
    exc: sa_exc.SQLAlchemyError, dialect: str, where: str = "the metadata database"
) -> LoopmlError | None:
    """The loopml error for a database error, or ``None`` for a programming error.

    ``where`` names the database in a full disk's message (SQLite's file).

    Messages never include the driver's text: it may carry host names, user names or
    values, and it goes out to HTTP clients. The original stays chained for server logs.
    """
    details: dict[str, object] = {"dialect": dialect}
    if isinstance(exc, sa_exc.IntegrityError):
        if constraint := _constraint(exc):
            details["constraint"] = constraint
        if is_unique_violation(exc):
            return AlreadyExistsError(
                "a record with the same unique key already exists", details=details
            )
        return ConflictError(
            "the change conflicts with related records in the metadata database", details=details
        )
    if isinstance(exc, sa_exc.DBAPIError) and _is_missing_schema(exc):
        return ServiceUnavailableError(_SCHEMA_HINT, details={**details, "retryable": False})
    if isinstance(exc, sa_exc.DataError):
        return ValidationError(
            "a value does not fit its database column (too long or out of range)", details=details
        )
    if wrote_while_reading(exc):
        return None  # a write inside MetadataStore.reading(): WroteWhileReadingError
    if _is_disk_full(exc):
        return disk_full("the change to the metadata database", where, store="database")
    unavailable = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
    disconnected = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    if isinstance(exc, unavailable) or disconnected:
        if "database is locked" in str(getattr(exc, "orig", "")):
            message = "the metadata database is busy (locked by another writer); retry later"
        else:
            message = "the metadata database is unreachable; retry later"
        return ServiceUnavailableError(message, details={**details, "retryable": True})
    return None


@contextmanager
def translated(dialect: str, where: str = "the metadata database") -> Iterator[None]:
    """Raise the loopml error for any database error raised inside the block."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        if wrote_while_reading(exc):
            raise WroteWhileReadingError(str(getattr(exc, "orig", exc))) from exc
        mapped = translate(exc, dialect, where)
        if mapped is None:
            raise
        raise mapped from exc
