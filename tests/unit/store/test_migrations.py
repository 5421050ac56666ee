"""Alembic migrations: one head, and ``upgrade()`` builds exactly the ORM's schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from loopml.core.errors import ConflictError
from loopml.store import MetadataStore, events, projects
from loopml.store._migrate import (
    MIGRATIONS_DIR,
    current_revision,
    head_revision,
    revisions,
    script_directory,
)
from loopml.store.orm import Base


def test_single_head() -> None:
    assert len(script_directory().get_heads()) == 1


def test_the_revisions_read_from_the_files_are_alembics() -> None:
    # The start-up reads them without Alembic (store/_migrate.py): they must agree.
    scripts = script_directory()
    assert revisions() == {
        script.revision: script.down_revision for script in scripts.walk_revisions()
    }
    assert head_revision() == scripts.get_current_head()


def test_the_current_revision_is_alembics(empty_store: MetadataStore) -> None:
    engine = create_engine(empty_store.url)

    def both() -> tuple[str | None, str | None]:
        with engine.connect() as conn:
            return current_revision(conn), MigrationContext.configure(conn).get_current_revision()

    try:
        assert both() == (None, None)
        empty_store.upgrade()
        assert both() == (head_revision(), head_revision())
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0003'")
        assert both() == ("0003", "0003")
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM alembic_version")
        assert both() == (None, None)
    finally:
        engine.dispose()


def test_migration_template_ships_with_the_package() -> None:
    # `alembic revision` needs it; a packaging rule dropping *.mako would break that.
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "env.py").is_file()


def test_upgrade_matches_orm_metadata(empty_store: MetadataStore) -> None:
    empty_store.upgrade()
    engine = create_engine(empty_store.url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_upgrade_creates_tables_and_default_project(empty_store: MetadataStore) -> None:
    assert empty_store.needs_upgrade()
    assert empty_store.current_revision() is None
    head = empty_store.upgrade()
    assert head == empty_store.head_revision() == empty_store.current_revision()
    assert not empty_store.needs_upgrade()
    engine = create_engine(empty_store.url)
    try:
        assert {"projects", "events", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    with empty_store.session() as session:
        assert projects.get(session, "default").name == "default"


def test_upgrade_twice_is_a_no_op(store: MetadataStore) -> None:
    with store.session() as session:
        before = projects.get(session, "default")
        events_before = events.list_(session).items
    assert store.upgrade() == store.head_revision()
    with store.session() as session:
        assert projects.get(session, "default") == before
        assert projects.list_(session).items == [before]
        assert events.list_(session).items == events_before
    assert [e.type for e in events_before] == ["project.created"]


def test_check_refuses_a_database_without_schema(empty_store: MetadataStore) -> None:
    from loopml.core.errors import ServiceUnavailableError

    with pytest.raises(ServiceUnavailableError, match="loopml db upgrade"):
        empty_store.check()
    empty_store.upgrade()
    empty_store.check()


def test_upgrade_refuses_a_newer_schema(store: MetadataStore) -> None:
    engine = create_engine(store.url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        engine.dispose()
    with pytest.raises(ConflictError, match="newer loopml"):
        store.upgrade()


def test_concurrent_upgrades_on_sqlite_leave_one_default_project(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race' / 'loopml.db'}"
    code = (
        "import sys; from loopml.store import MetadataStore; MetadataStore(sys.argv[1]).upgrade()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, url]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    store = MetadataStore(url)
    try:
        assert not store.needs_upgrade()
        with store.session() as session:
            assert [p.name for p in projects.list_(session).items] == ["default"]
            assert [e.type for e in events.list_(session).items] == ["project.created"]
    finally:
        store.dispose()


def test_concurrent_upgrades_from_threads(database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stores = [MetadataStore(database_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            heads = list(pool.map(MetadataStore.upgrade, stores))
        assert len(set(heads)) == 1
        with stores[0].session() as session:
            assert [p.name for p in projects.list_(session).items] == ["default"]
            assert len(events.list_(session).items) == 1
    finally:
        for store in stores:
            store.dispose()


def test_names_compare_bytewise_on_postgresql(store: MetadataStore) -> None:
    # Alembic's comparison ignores collations, so check them here: keyset pagination on a
    # locale collation would order differently from SQLite.
    if store.dialect != "postgresql":
        assert store.dialect == "sqlite"  # SQLite compares text byte-wise already
        return
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_name IN ('name', 'type', "
                "'project') AND table_name IN ('projects', 'events')"
            ).all()
    finally:
        engine.dispose()
    assert sorted(rows) == [
        ("events", "project", "C"),
        ("events", "type", "C"),
        ("projects", "name", "C"),
    ]


def _upgrade_to(store: MetadataStore, revision: str) -> None:
    """Bring ``store``'s database to ``revision`` with Alembic, as an older loopml left it."""
    from alembic import command

    from loopml.store._migrate import alembic_config

    engine = create_engine(store.url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _parent_of_head() -> str:
    parent = script_directory().get_revision(script_directory().get_current_head()).down_revision
    assert isinstance(parent, str)
    return parent


def test_prepare_creates_an_empty_database_and_leaves_one_at_head(
    empty_store: MetadataStore,
) -> None:
    assert empty_store.prepare() == ""
    assert empty_store.current_revision() == empty_store.head_revision()
    assert empty_store.prepare() is None
    assert empty_store.prepare(create=False) is None


def test_prepare_refuses_an_empty_database_when_told_not_to_create(
    empty_store: MetadataStore,
) -> None:
    with pytest.raises(ConflictError, match="has no schema yet") as caught:
        empty_store.prepare(create=False)
    assert "`loopml db upgrade`" in caught.value.message
    assert empty_store.current_revision() is None


def test_prepare_refuses_an_older_schema_unless_told_to_upgrade(
    empty_store: MetadataStore,
) -> None:
    older, head = _parent_of_head(), empty_store.head_revision()
    _upgrade_to(empty_store, older)
    with pytest.raises(ConflictError) as caught:
        empty_store.prepare()
    message = caught.value.message
    assert f"at schema revision {older}, behind this loopml's {head}" in message
    assert "`loopml db upgrade`" in message
    assert "`loopml up --upgrade`" in message
    assert caught.value.details == {"current": older, "head": head}
    assert empty_store.current_revision() == older  # nothing changed
    assert empty_store.prepare(upgrade=True) == older
    assert empty_store.current_revision() == head


def test_prepare_refuses_a_newer_schema_even_when_told_to_upgrade(store: MetadataStore) -> None:
    engine = create_engine(store.url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_later'")
    finally:
        engine.dispose()
    for upgrade in (False, True):
        with pytest.raises(ConflictError, match="never downgrades") as caught:
            store.prepare(upgrade=upgrade)
        assert caught.value.details["current"] == "9999_later"
