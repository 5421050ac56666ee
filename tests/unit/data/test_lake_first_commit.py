"""A table exists once its first version is committed (issue 51, item 3): a first ingest
that is refused or killed before its commit leaves no table in the catalog."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from datetime import timedelta

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from loopml.core import layout
from loopml.core.errors import LoopmlError, NotFoundError
from loopml.data import _tables, lake
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, projects

ACTOR = "tester"
SCHEMA = pa.schema([("a", pa.int64())])


def _disk_fills() -> Iterator[pa.RecordBatch]:
    yield pa.record_batch([pa.array([1, 2])], schema=SCHEMA)
    raise OSError(errno.ENOSPC, "No space left on device")


def _table_events(store: MetadataStore) -> list[str]:
    with store.session() as session:
        return [e.type for e in events.list_(session, type="table.*").items]


def _folder(store: MetadataStore, artifacts: ArtifactStore, table_id: str) -> str:
    with store.session() as session:
        project_id = projects.get(session, "default").id
    return layout.lake_table_prefix(project_id, table_id)


def test_a_first_ingest_refused_midway_leaves_no_table(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    refused = pa.RecordBatchReader.from_batches(SCHEMA, _disk_fills())
    with pytest.raises((LoopmlError, OSError)):
        lake.ingest_arrow(store, artifacts, "default", "sales", refused, actor=ACTOR)
    assert lake.list_tables(store, "default") == []
    with pytest.raises(NotFoundError):
        lake.get_table(store, artifacts, "default", "sales")
    assert _table_events(store) == []
    commit = lake.ingest_arrow(
        store, artifacts, "default", "sales", pa.table({"a": [3]}), actor=ACTOR
    )
    assert commit.version == 0
    assert [(t.name, t.version, t.row_count) for t in lake.list_tables(store, "default")] == [
        ("sales", 0, 1)
    ]
    assert _table_events(store) == ["table.created", "table.appended"]


def test_a_first_ingest_killed_before_its_commit_is_never_listed_and_is_swept(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    # What a writer killed (kill -9) between creating the table's row and committing left.
    _tables.ensure_row(store, "default", "sales", True, ACTOR)
    assert lake.list_tables(store, "default") == []
    with pytest.raises(NotFoundError):
        lake.get_table(store, artifacts, "default", "sales")
    assert lake.sweep_pending(store, artifacts, older_than=timedelta(hours=1)) == (0, 0)
    assert lake.sweep_pending(store, artifacts, older_than=timedelta(0)) == (0, 1)
    with pytest.raises(NotFoundError):
        _tables.locate(store, artifacts, "default", "sales", pending=True)
    assert _table_events(store) == []


def test_a_first_commit_whose_record_was_cut_off_makes_the_table_at_the_sweep(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    # Killed after the Delta commit, before recording it: the table exists, at version 0.
    _tables.ensure_row(store, "default", "sales", True, ACTOR)
    row, loc = _tables.locate(store, artifacts, "default", "sales", pending=True)
    write_deltalake(loc.uri, pa.table({"a": [1, 2]}), storage_options=loc.storage_options)
    assert lake.sweep_pending(store, artifacts, older_than=timedelta(0)) == (1, 0)
    listed = lake.list_tables(store, "default")
    assert [(t.name, t.version, t.row_count) for t in listed] == [("sales", 0, 2)]
    assert list(artifacts.list(_folder(store, artifacts, row.id)))
    assert _table_events(store) == ["table.created", "table.appended"]


def test_creating_a_table_over_a_half_made_one_takes_it_over(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _tables.ensure_row(store, "default", "sales", True, ACTOR)
    made = lake.create_table(store, artifacts, "default", "sales", actor=ACTOR)
    assert (made.version, made.row_count) == (-1, 0)
    assert [t.name for t in lake.list_tables(store, "default")] == ["sales"]
    assert lake.sweep_pending(store, artifacts, older_than=timedelta(0)) == (0, 0)
    assert _table_events(store) == ["table.created"]
