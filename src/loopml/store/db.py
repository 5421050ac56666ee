"""``MetadataStore``: the engine, transactions and schema of the metadata database."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from loopml.core.errors import AlreadyExistsError, ConflictError, ServiceUnavailableError
from loopml.core.names import DEFAULT_PROJECT
from loopml.store import _engine, _migrate, projects
from loopml.store._errors import translated

SYSTEM_ACTOR = "system"


@dataclass
class _Shared:
    """The one session of a ``MetadataStore.reading()`` block, opened on first use."""

    store: MetadataStore
    thread: int
    session: Session | None = None

    def mine(self, store: MetadataStore) -> bool:
        # A session is never shared across threads, even where a context was copied.
        return self.store is store and self.thread == threading.get_ident()


_SHARED: ContextVar[_Shared | None] = ContextVar("loopml_store_shared", default=None)


class MetadataStore:
    """The metadata database (SQLite file or PostgreSQL) behind every repository module.

    Args:
        url: SQLAlchemy URL. ``sqlite:///path/loopml.db`` or ``postgresql://user@host/db``
            (``postgres://`` and ``postgresql://`` are driven by psycopg 3).
        pool_size: connections kept open per process.
        busy_timeout_ms: how long a SQLite writer waits for the lock before failing.

    Raises:
        ConfigurationError: the URL is malformed or names an unsupported database.
    """

    def __init__(self, url: str, *, pool_size: int = 5, busy_timeout_ms: int = 5000) -> None:
        parsed = _engine.parse_url(url)
        self._parsed = parsed
        self.url: str = parsed.render_as_string(hide_password=False)
        self.dialect: str = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self._engine = _engine.create_sqlite_engine(
                parsed, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms
            )
        else:
            self._engine = _engine.create_postgres_engine(parsed, pool_size=pool_size)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        # What a full disk's message names: SQLite's file, or the server's database.
        self._where = (
            str(parsed.database)
            if self.dialect == "sqlite" and parsed.database
            else f"the metadata database {self.safe_url}"
        )

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs and messages."""
        return self._parsed.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"MetadataStore({self.safe_url!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Inside ``reading()`` every block shares the reading's one read-only transaction
        instead (see there).

        Database errors leave as loopml errors: unique violations as ``AlreadyExistsError``,
        other integrity violations as ``ConflictError``, a lost or unreachable database as
        ``ServiceUnavailableError`` (retryable).
        """
        shared = _SHARED.get()
        if shared is not None and shared.mine(self):
            with self._shared_session(shared) as session:
                yield session
            return
        with translated(self.dialect, self._where):
            session = self._sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                # The connection may be gone already; the original error is the one to see.
                with contextlib.suppress(SQLAlchemyError):
                    session.rollback()
                raise
            finally:
                session.close()

    @contextmanager
    def _shared_session(self, shared: _Shared) -> Iterator[Session]:
        with translated(self.dialect, self._where):
            if shared.session is None:
                shared.session = self._sessions()
            try:
                yield shared.session
            except BaseException:
                # Nothing was written (reading refuses writes); ending the transaction
                # clears a failed statement (PostgreSQL refuses any other until then). The
                # next block begins a new one.
                with contextlib.suppress(SQLAlchemyError):
                    shared.session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Within this block (this thread or task), sessions only read, and share one
        transaction.

        On SQLite it begins deferred instead of taking the write lock: a page reads one
        snapshot beside the writers (WAL) instead of waiting for each of them to commit, and
        a write fails at once ("attempt to write a readonly database"). On PostgreSQL it is
        ``READ ONLY``: readers never wait on writers there, and a write fails the same way.
        Either raises ``WroteWhileReadingError``. Every ``session()`` block inside uses the
        same session and transaction (one connection, one begin, for a whole page), which
        ends with the block.
        """
        token = _engine.READING.set(True)
        outer = _SHARED.get()
        shared = (
            None if outer is not None and outer.mine(self) else _Shared(self, threading.get_ident())
        )
        shared_token = _SHARED.set(shared) if shared is not None else None
        try:
            yield
        finally:
            if shared_token is not None:
                _SHARED.reset(shared_token)
            if shared is not None and shared.session is not None:
                with contextlib.suppress(SQLAlchemyError):
                    shared.session.rollback()
                shared.session.close()
            _engine.READING.reset(token)

    def check(self) -> None:
        """Readiness: the database answers and its schema is at head.

        Raises:
            ServiceUnavailableError: the database is unreachable or needs an upgrade.
        """
        with translated(self.dialect), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = _migrate.current_revision(conn)
        head = self.head_revision()
        if current != head:
            raise ServiceUnavailableError(
                f"the metadata database schema is at revision {current or 'none'}, expected "
                f"{head}: run `loopml db upgrade`",
                details={"current": current, "head": head, "retryable": False},
            )

    def upgrade(self) -> str:
        """Upgrade the schema to head, then make sure the ``default`` project exists.

        Idempotent, and safe to run from several processes at once: PostgreSQL serializes
        them with an advisory lock, SQLite with a lock file beside the database.

        Returns:
            The head revision.
        """
        self._refuse_unknown_revision(self.current_revision())
        with self._upgrade_lock(), translated(self.dialect), self._engine.begin() as conn:
            _migrate.upgrade_on(conn)
        self._ensure_default_project()
        return self.head_revision()

    def prepare(self, *, create: bool = True, upgrade: bool = False) -> str | None:
        """Make the schema ready for a process to start on, or refuse before anything starts.

        An empty database gets the schema when ``create`` (a new home starts with no setup).
        One at an older revision is upgraded only when ``upgrade``: an operator's choice,
        made after a backup, never a side effect of a start. One a newer loopml upgraded is
        always refused: loopml never downgrades.

        Returns:
            The revision upgraded from (``""`` from an empty database), or ``None`` when
            the schema was at head already.

        Raises:
            ConflictError: the schema is behind and ``upgrade`` is off, missing and
                ``create`` is off, or ahead of this loopml (``details``: current, head).
        """
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return None
        self._refuse_unknown_revision(current)
        if current is None and not create:
            raise ConflictError(
                f"the metadata database {self.safe_url} has no schema yet and "
                "database.auto_upgrade is off: run `loopml db upgrade`",
                details={"current": None, "head": head},
            )
        if current is not None and not upgrade:
            raise ConflictError(
                f"the metadata database {self.safe_url} is at schema revision {current}, "
                f"behind this loopml's {head}: back it up, then run `loopml db upgrade` (or "
                "start with `loopml up --upgrade`)",
                details={"current": current, "head": head},
            )
        self.upgrade()
        return current or ""

    def current_revision(self) -> str | None:
        """The schema revision of the database, ``None`` before the first upgrade."""
        with translated(self.dialect), self._engine.connect() as conn:
            return _migrate.current_revision(conn)

    def head_revision(self) -> str:
        """The newest revision this version of loopml ships."""
        return _migrate.head_revision()

    @staticmethod
    def sqlite_file(url: str) -> Path | None:
        """The file of a SQLite ``url`` where it exists, else ``None`` (another database, a
        file not made yet): a question that touches nothing, not even the file's folder."""
        parsed = _engine.parse_url(url)
        if parsed.get_backend_name() != "sqlite" or _engine.is_memory(parsed):
            return None
        path = Path(str(parsed.database))
        return path if path.is_file() else None

    def needs_upgrade(self) -> bool:
        """Whether the schema is behind head: one small query, cheap at server start."""
        return self.current_revision() != self.head_revision()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def _refuse_unknown_revision(self, current: str | None) -> None:
        if current is None or current in _migrate.revisions():
            return
        raise ConflictError(
            f"the metadata database {self.safe_url} is at schema revision {current!r}, "
            f"which this version of loopml does not know (its newest is "
            f"{self.head_revision()!r}): a newer loopml upgraded it, and loopml never "
            "downgrades; run that newer loopml, or restore a backup taken before it",
            details={"current": current, "head": self.head_revision()},
        )

    def _upgrade_lock(self) -> contextlib.AbstractContextManager[None]:
        if self.dialect == "sqlite" and not _engine.is_memory(self._parsed):
            return _migrate.file_lock(Path(f"{self._parsed.database}.upgrade-lock"))
        return contextlib.nullcontext()

    def _ensure_default_project(self) -> None:
        # Two processes may both find it missing; the loser's insert fails on the unique
        # name and its transaction rolls back whole, so one project and one event remain.
        with contextlib.suppress(AlreadyExistsError), self.session() as session:
            projects.create(
                session,
                DEFAULT_PROJECT,
                description="The project used when none is named.",
                actor=SYSTEM_ACTOR,
            )
