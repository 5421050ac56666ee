"""MetadataStore: URLs, SQLite pragmas, transactions and database-error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from loopml.core.errors import (
    AlreadyExistsError,
    ConfigurationError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.store import MetadataStore, WroteWhileReadingError, events, projects

UNREACHABLE_PG = "postgresql://postgres:s3cret-pw@127.0.0.1:1/x"


@pytest.fixture
def unreachable() -> Iterator[MetadataStore]:
    store = MetadataStore(UNREACHABLE_PG)
    yield store
    store.dispose()


def test_sqlite_pragmas_are_set_on_every_connection(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'p.db'}", busy_timeout_ms=1234)
    try:
        for _ in range(2):  # a second session may get a different pooled connection
            with store.session() as session:
                pragma = lambda name: session.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
                assert pragma("journal_mode") == "wal"
                assert pragma("foreign_keys") == 1
                assert pragma("synchronous") == 1  # NORMAL
                assert pragma("busy_timeout") == 1234
                # Reads through a memory map: a filtered runs page over 100,000 runs spent
                # most of its time in read() calls for pages the OS already cached.
                assert pragma("mmap_size") == 1024**3
    finally:
        store.dispose()


def test_sqlite_creates_the_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "loopml.db"
    store = MetadataStore(f"sqlite:///{path}")
    try:
        store.upgrade()
        assert path.is_file()
    finally:
        store.dispose()


def test_in_memory_sqlite_works() -> None:
    store = MetadataStore("sqlite://")
    try:
        store.upgrade()
        with store.session() as session:
            assert projects.get(session, "default").name == "default"
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("url", "dialect", "driver"),
    [
        ("sqlite:///x.db", "sqlite", "sqlite://"),
        ("postgresql://u:pw@h/db", "postgresql", "postgresql+psycopg://"),
        ("postgres://u:pw@h/db", "postgresql", "postgresql+psycopg://"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql", "postgresql+psycopg://"),
    ],
)
def test_urls_are_normalized(url: str, dialect: str, driver: str) -> None:
    store = MetadataStore(url)
    try:
        assert store.dialect == dialect
        assert store.url.startswith(driver)
        assert "pw" not in store.safe_url
        assert "pw" not in repr(store)
    finally:
        store.dispose()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+asyncpg://u@h/db", "nonsense"])
def test_unsupported_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL") as caught:
        MetadataStore(url)
    assert "sqlite" in caught.value.message.lower()


def test_unreachable_database_is_503_on_session_use(unreachable: MetadataStore) -> None:
    with pytest.raises(ServiceUnavailableError) as caught, unreachable.session() as session:
        projects.get(session, "default")
    error = caught.value
    assert error.status == 503
    assert "unreachable" in error.message
    assert error.details["retryable"] is True
    assert "s3cret" not in str(error.to_dict())


@pytest.mark.parametrize("method", ["check", "upgrade", "needs_upgrade", "current_revision"])
def test_unreachable_database_is_503_everywhere(unreachable: MetadataStore, method: str) -> None:
    with pytest.raises(ServiceUnavailableError, match="unreachable") as caught:
        getattr(unreachable, method)()
    assert "s3cret" not in str(caught.value.to_dict())


def test_missing_schema_is_503_with_upgrade_hint(empty_store: MetadataStore) -> None:
    with (
        pytest.raises(ServiceUnavailableError, match="loopml db upgrade"),
        empty_store.session() as s,
    ):
        projects.get(s, "default")


def test_loopml_errors_pass_through_and_roll_back(store: MetadataStore) -> None:
    def create_then_miss() -> None:
        with store.session() as session:
            projects.create(session, "kept", actor="ada")
            projects.get(session, "ghost")

    with pytest.raises(NotFoundError):
        create_then_miss()
    with store.session() as session:
        assert events.list_(session, project="kept").items == []
        with pytest.raises(NotFoundError):
            projects.get(session, "kept")


def test_session_commits_on_success(store: MetadataStore) -> None:
    with store.session() as session:
        projects.create(session, "kept", actor="ada")
    other = MetadataStore(store.url)
    try:
        with other.session() as session:
            assert projects.get(session, "kept").name == "kept"
    finally:
        other.dispose()


def test_check_passes_at_head(store: MetadataStore) -> None:
    store.check()


@pytest.mark.postgres
def test_postgres_sessions_probe_a_vanished_peer_on_both_ends(postgres_url: str) -> None:
    # A host that vanishes without closing its connections: the server ends its session
    # (and its transaction's row locks) after 10 s idle + 3 probes 5 s apart, where the
    # kernel's defaults wait over two hours; the client's libpq probes the same way.
    store = MetadataStore(postgres_url)
    try:
        with store.session() as session:
            shown = {
                name: session.execute(text(f"SHOW {name}")).scalar_one()
                for name in (
                    "tcp_keepalives_idle",
                    "tcp_keepalives_interval",
                    "tcp_keepalives_count",
                )
            }
            dsn = session.connection().connection.dbapi_connection.info.dsn  # type: ignore[union-attr]
    finally:
        store.dispose()
    assert shown == {
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
    }
    for part in (
        "keepalives=1",
        "keepalives_idle=10",
        "keepalives_interval=5",
        "keepalives_count=3",
    ):
        assert part in dsn, dsn


def test_keepalives_given_in_the_url_win(postgres_url: str) -> None:
    # postgres_url's own options set the test's schema (search_path): they are kept.
    store = MetadataStore(f"{postgres_url}%20-ctcp_keepalives_count%3D4&keepalives_idle=30")
    try:
        with store.session() as session:
            count = session.execute(text("SHOW tcp_keepalives_count")).scalar_one()
            idle = session.execute(text("SHOW tcp_keepalives_idle")).scalar_one()
            path = session.execute(text("SHOW search_path")).scalar_one()
            dsn = session.connection().connection.dbapi_connection.info.dsn  # type: ignore[union-attr]
    finally:
        store.dispose()
    assert (count, idle) == ("4", "10")
    assert path == postgres_url.rsplit("%3D", 1)[1]
    assert "keepalives_idle=30" in dsn
    assert " keepalives_idle=10 " not in dsn


def test_connection_killed_mid_write_is_503_and_leaves_nothing(postgres_url: str) -> None:
    # RELIABILITY item 22: the database goes away in the middle of a transaction.
    store = MetadataStore(postgres_url)
    try:
        store.upgrade()
        _kill_mid_write(store, admin_url=postgres_url.split("?", 1)[0])
    finally:
        store.dispose()


def _kill_mid_write(store: MetadataStore, admin_url: str) -> None:
    def write_while_killed() -> None:
        with store.session() as session:
            projects.create(session, "half", actor="ada")
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            events.append(session, type="x.y", subject="s", project="half", actor="ada")

    with pytest.raises(ServiceUnavailableError) as caught:
        write_while_killed()
    assert caught.value.details["retryable"] is True
    # The pool recovers on the next use (pre-ping), and nothing of the transaction stayed.
    with store.session() as session:
        with pytest.raises(NotFoundError):
            projects.get(session, "half")
        assert events.list_(session, project="half").items == []
    with store.session() as session:
        projects.create(session, "half", actor="ada")
    with pytest.raises(AlreadyExistsError), store.session() as session:
        projects.create(session, "half", actor="ada")


def test_a_failed_transaction_rolls_back_its_ddl_too(store: MetadataStore) -> None:
    # SQLite sessions begin their own (IMMEDIATE) transaction, so schema changes are
    # transactional there as on PostgreSQL: a migration that fails half-way leaves nothing.
    from sqlalchemy import inspect, text

    def migrate_and_fail() -> None:
        with store.session() as session:
            session.execute(text("CREATE TABLE half_built (x INTEGER)"))
            raise RuntimeError("migration failed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        migrate_and_fail()
    with store.session() as session:
        assert "half_built" not in inspect(session.connection()).get_table_names()


def test_text_with_nul_is_refused_on_every_dialect(store: MetadataStore) -> None:
    # PostgreSQL cannot store NUL in text and SQLite would store it silently: the store
    # refuses it on both, with a message that says what to fix. (JSON columns receive it
    # escaped as \u0000, which both store and return intact.)
    with store.session() as session:
        before = projects.get(session, "default").description
    with pytest.raises(ValidationError, match="NUL"), store.session() as session:
        projects.update(session, "default", description="a\x00b", actor="ada")
    with store.session() as session:
        assert projects.get(session, "default").description == before


def test_opening_a_fresh_sqlite_file_waits_for_a_writer_instead_of_failing(
    tmp_path: Path,
) -> None:
    # Switching a file to WAL needs exclusive access, and SQLite answers "locked" at once
    # instead of waiting: a store opened while another process writes must wait it out.
    import sqlite3
    import threading
    import time

    path = tmp_path / "shared.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE elsewhere (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO elsewhere VALUES (1)")
    release = threading.Timer(0.4, lambda: other.execute("COMMIT"))
    release.start()
    store = MetadataStore(f"sqlite:///{path}", busy_timeout_ms=5000)
    started = time.monotonic()
    try:
        store.upgrade()
        waited = time.monotonic() - started
    finally:
        release.join()
        store.dispose()
        other.close()
    assert waited >= 0.3
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reading_sessions_read_beside_a_writer_and_refuse_writes(tmp_path: Path) -> None:
    """On SQLite a session inside ``store.reading()`` begins deferred: it reads while
    another connection holds the write lock (a write session would wait busy_timeout for
    it), and a write in it fails at once; the pooled connection writes again afterwards."""
    import sqlite3

    store = MetadataStore(f"sqlite:///{tmp_path / 'r.db'}", busy_timeout_ms=500, pool_size=1)
    store.upgrade()
    writer = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with store.reading(), store.session() as session:
            assert projects.get(session, "default").name == "default"
        # It read while the lock was held: a session that waited for the lock would have
        # given up after busy_timeout with ServiceUnavailableError, as the next one does.
        assert writer.in_transaction
        # A write session waits for the lock, then gives up.
        with pytest.raises(ServiceUnavailableError), store.session() as session:
            projects.get(session, "default")
    finally:
        writer.execute("COMMIT")
        writer.close()
    with (
        pytest.raises(WroteWhileReadingError, match="readonly database"),
        store.reading(),
        store.session() as session,
    ):
        projects.create(session, "nope", actor="t")
    with store.session() as session:
        projects.create(session, "yes", actor="t")
    with store.reading(), store.session() as session:
        assert projects.get(session, "yes").name == "yes"
    store.dispose()


def test_reading_shares_one_read_only_transaction(store: MetadataStore) -> None:
    """Inside ``reading()`` every session block is the same session (one transaction for a
    page); a write fails at once on both databases; a failed block ends the transaction
    and the next block reads again; outside the block sessions are separate again."""
    with store.reading():
        with store.session() as first:
            assert projects.get(first, "default").name == "default"
        with store.session() as second:
            assert second is first
        with pytest.raises(WroteWhileReadingError), store.session() as session:
            projects.create(session, "nope", actor="t")
        with pytest.raises(NotFoundError), store.session() as session:
            projects.get(session, "missing")
        with store.session() as again:
            assert again is first
            assert projects.get(again, "default").name == "default"
            with pytest.raises(NotFoundError):
                projects.get(again, "nope")  # nothing of the refused write was kept
    with store.session() as one, store.session() as other:
        assert one is not other
        projects.create(one, "yes", actor="t")


def test_reading_reads_one_snapshot_on_sqlite(tmp_path: Path) -> None:
    """A page's reads see the database as it was at its first read: a project another
    connection commits between two of its blocks shows only to the next page."""
    import threading

    store = MetadataStore(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    writer = MetadataStore(f"sqlite:///{tmp_path / 's.db'}")

    def make_later() -> None:
        with writer.session() as session:
            projects.create(session, "later", actor="t")

    try:
        with store.reading():
            with store.session() as session:
                assert projects.get(session, "default").name == "default"
            # Another thread's context: its transactions write as usual.
            committing = threading.Thread(target=make_later)
            committing.start()
            committing.join()
            with pytest.raises(NotFoundError), store.session() as session:
                projects.get(session, "later")
        with store.reading(), store.session() as session:
            assert projects.get(session, "later").name == "later"
    finally:
        writer.dispose()
        store.dispose()


def test_reading_never_shares_a_session_with_another_thread(store: MetadataStore) -> None:
    """A thread started with a copy of the reading's context opens its own session."""
    import contextvars
    import threading

    seen: list[object] = []

    def other() -> None:
        with store.session() as session:
            seen.append(session)

    with store.reading(), store.session() as mine:
        worker = threading.Thread(target=contextvars.copy_context().run, args=(other,))
        worker.start()
        worker.join()
    assert len(seen) == 1
    assert seen[0] is not mine
