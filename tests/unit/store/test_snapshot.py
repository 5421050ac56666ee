"""Whole-database copies: a consistent SQLite file from either dialect, loaded back into an
empty database of either dialect with every row, and refused where it must be."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from loopml.core.errors import ConflictError
from loopml.store import MetadataStore, projects
from loopml.store.orm import Base, RunRow
from loopml.store.snapshot import file_revision, lake_table_versions, load_file, snapshot_to_file
from tests.tracking_rows import make_run


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr)
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _fill(store: MetadataStore) -> None:
    with store.session() as session:
        projects.create(session, "churn", description="a project", actor="ada")
    parent = make_run(store)
    child = make_run(store)
    with store.session() as session:
        session.get_one(RunRow, child.id).parent_run_id = parent.id
    with store.session() as session:
        # A parent listed after its child: the copy must still insert it first.
        session.get_one(RunRow, parent.id).name = "zz-parent"


def test_a_snapshot_holds_every_row_and_loads_into_an_empty_database(
    store: MetadataStore, tmp_path: Path
) -> None:
    _fill(store)
    copy = tmp_path / "snapshot.db"
    revision = snapshot_to_file(store, copy)
    assert revision == store.head_revision() == file_revision(copy)
    original = _rows(store.url)
    assert _rows(f"sqlite:///{copy}") == original
    assert lake_table_versions(copy) == []

    target = MetadataStore(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        assert load_file(copy, target) == sum(len(rows) for rows in original.values())
        assert _rows(target.url) == original
        with pytest.raises(ConflictError, match="not empty"):
            load_file(copy, target)
    finally:
        target.dispose()


@pytest.mark.postgres
def test_an_embedded_snapshot_moves_to_postgres_and_new_ids_follow_the_copied_ones(
    tmp_path: Path, postgres_url: str
) -> None:
    source = MetadataStore(f"sqlite:///{tmp_path / 'embedded.db'}")
    target = MetadataStore(postgres_url)
    try:
        source.upgrade()
        _fill(source)
        copy = tmp_path / "snapshot.db"
        snapshot_to_file(source, copy)
        load_file(copy, target)
        assert _rows(target.url) == _rows(source.url)
        # The events' id sequence continues after the copied ids.
        with target.session() as session:
            projects.create(session, "after", description="", actor="ada")
        events = Base.metadata.tables["events"]
        with target._engine.connect() as conn:
            ids = [row[0] for row in conn.execute(select(events.c.id).order_by(events.c.id))]
        assert len(ids) == len(set(ids))
        assert ids[-1] > ids[-2]
    finally:
        source.dispose()
        target.dispose()


def test_a_database_with_no_schema_is_refused(tmp_path: Path) -> None:
    bare = MetadataStore(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        with pytest.raises(ConflictError, match="no database at"):
            snapshot_to_file(bare, tmp_path / "copy.db")
        with sqlite3.connect(tmp_path / "bare.db") as conn:
            conn.execute("CREATE TABLE other (x INTEGER)")
        with pytest.raises(ConflictError, match="no loopml schema"):
            snapshot_to_file(bare, tmp_path / "copy.db")
    finally:
        bare.dispose()
