"""Compaction and vacuum on real Delta tables: local folder and S3, SQLite and PostgreSQL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from loopml.core import layout
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.housekeeping import TABLE_INPUT_KIND, table_ref
from loopml.core.runs import LogBatch, RunInput
from loopml.data import datasets, housekeeping, lake
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, experiments, projects, run_logs, runs

ACTOR = "tester"


def _append(store: MetadataStore, artifacts: ArtifactStore, n: int, **kw: object) -> None:
    for i in range(n):
        data = pa.table({"id": [2 * i, 2 * i + 1], "name": [f"r{i}", f"s{i}"]})
        lake.ingest_arrow(store, artifacts, "default", "sales", data, actor=ACTOR, **kw)  # type: ignore[arg-type]


def _stored(store: MetadataStore, artifacts: ArtifactStore) -> tuple[int, int]:
    """Data files and their bytes in the table's folder, as the storage lists them."""
    with store.session() as session:
        project_id = projects.get(session, "default").id
    table_id = lake.get_table(store, artifacts, "default", "sales").id
    found = [
        o
        for o in artifacts.list(layout.lake_table_prefix(project_id, table_id))
        if o.key.endswith(".parquet")
    ]
    return len(found), sum(o.size for o in found)


def _rows(store: MetadataStore, artifacts: ArtifactStore, version: int | None = None) -> list[int]:
    dataset = lake.read_dataset(store, artifacts, "default", "sales", version)
    return sorted(dataset.to_table().column("id").to_pylist())


def _event_types(store: MetadataStore) -> list[str]:
    with store.session() as session:
        return [e.type for e in events.list_(session, type="table.*").items]


def test_compaction_reduces_files_and_keeps_the_rows(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _append(store, artifacts, 4)
    before = _rows(store, artifacts)
    report = housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    assert (report.files_before, report.files_after, report.version) == (4, 1, 4)
    assert _rows(store, artifacts) == before == list(range(8))
    assert lake.get_table(store, artifacts, "default", "sales").version == 4
    assert _rows(store, artifacts, version=2) == list(range(6))
    assert _event_types(store)[-1] == "table.compacted"


def test_vacuum_frees_old_versions_and_a_dry_run_frees_nothing(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _append(store, artifacts, 3)
    housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    files, size = _stored(store, artifacts)
    assert files == 4
    dry = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=True, actor=ACTOR
    )
    assert (dry.files_deleted, dry.dry_run) == (3, True)
    assert dry.bytes_freed > 0
    assert _stored(store, artifacts) == (files, size)
    done = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=False, actor=ACTOR
    )
    assert done.files_deleted == 3
    assert _stored(store, artifacts) == (1, size - done.bytes_freed)
    assert _rows(store, artifacts) == list(range(6))
    with pytest.raises(NotFoundError, match="vacuum freed its files"):
        _rows(store, artifacts, version=1)
    assert _event_types(store)[-2:] == ["table.vacuumed", "table.vacuumed"]
    assert lake.get_table(store, artifacts, "default", "sales").row_count == 6


def test_a_long_retention_frees_nothing(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _append(store, artifacts, 2)
    housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    report = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=168, dry_run=False, actor=ACTOR
    )
    assert report.files_deleted == 0
    assert _rows(store, artifacts, version=0) == [0, 1]


def test_a_version_a_run_references_stays_readable_after_vacuum(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _append(store, artifacts, 3)
    with store.session() as session:
        experiments.create(session, "default", "exp", actor=ACTOR)
        run = runs.create(session, "default", "exp", heartbeat_timeout_s=60, actor=ACTOR)
        ref = RunInput(kind=TABLE_INPUT_KIND, ref=table_ref("default", "sales", 1))
        run_logs.log_batch(session, "default", run.id, LogBatch(inputs=[ref]))
    assert housekeeping.referenced_versions(store, "default", "sales") == {1}
    housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    report = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=False, actor=ACTOR
    )
    assert (report.kept_versions, report.files_deleted) == ([1], 1)
    assert _rows(store, artifacts, version=1) == [0, 1, 2, 3]
    with pytest.raises(NotFoundError):
        _rows(store, artifacts, version=2)


def test_ingest_compacts_past_the_small_file_threshold(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    policy = LakeSettings(compact_min_files=3, small_file_bytes=1024 * 1024)
    _append(store, artifacts, 3, lake_settings=policy)
    assert "table.compacted" not in _event_types(store)
    _append(store, artifacts, 1, lake_settings=policy)
    assert _event_types(store)[-1] == "table.compacted"
    assert _rows(store, artifacts) == [0, 0, 1, 1, 2, 3, 4, 5]
    table = lake.get_table(store, artifacts, "default", "sales")
    assert (table.version, table.row_count) == (4, 8)


def test_bad_retention_and_a_table_without_data_are_refused(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    lake.create_table(store, artifacts, "default", "sales", actor=ACTOR)
    with pytest.raises(NotFoundError, match="no data yet"):
        housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    with pytest.raises(ValidationError, match="retention_hours"):
        housekeeping.vacuum(
            store, artifacts, "default", "sales", retention_hours=-1, dry_run=True, actor=ACTOR
        )


def test_a_version_a_dataset_snapshot_references_stays_readable_after_vacuum(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _append(store, artifacts, 3)
    made = datasets.create_version(store, artifacts, "default", "snap", "sales@1", actor=ACTOR)
    assert [(s.table, s.version) for s in made.sources] == [("sales", 1)]
    datasets.create_version(
        store,
        artifacts,
        "default",
        "joined",
        "SELECT * FROM sales@0 UNION ALL SELECT * FROM sales@1",
        actor=ACTOR,
    )
    assert housekeeping.referenced_versions(store, "default", "sales") == {0, 1}
    housekeeping.compact(store, artifacts, "default", "sales", actor=ACTOR)
    report = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=False, actor=ACTOR
    )
    assert (report.kept_versions, report.files_deleted) == ([0, 1], 1)
    assert _rows(store, artifacts, version=1) == [0, 1, 2, 3]
    with pytest.raises(NotFoundError, match="vacuum freed its files"):
        _rows(store, artifacts, version=2)
    # Once no snapshot references them, a vacuum frees those versions too.
    datasets.delete_dataset(store, artifacts, "default", "snap", actor=ACTOR)
    datasets.delete_dataset(store, artifacts, "default", "joined", actor=ACTOR)
    assert housekeeping.referenced_versions(store, "default", "sales") == set()
    freed = housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=False, actor=ACTOR
    )
    assert freed.kept_versions == []
    assert freed.files_deleted >= 2
    with pytest.raises(NotFoundError, match="vacuum freed its files"):
        _rows(store, artifacts, version=1)
    assert _rows(store, artifacts) == list(range(6))


def test_snapshots_of_another_table_or_project_keep_nothing(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _append(store, artifacts, 2)
    lake.ingest_arrow(store, artifacts, "default", "sales_eu", pa.table({"id": [1]}), actor=ACTOR)
    datasets.create_version(store, artifacts, "default", "eu", "sales_eu", actor=ACTOR)
    with store.session() as session:
        projects.create(session, "other", actor=ACTOR)
    lake.ingest_arrow(store, artifacts, "other", "sales", pa.table({"id": [1]}), actor=ACTOR)
    datasets.create_version(store, artifacts, "other", "snap", "sales@0", actor=ACTOR)
    assert housekeeping.referenced_versions(store, "default", "sales") == set()
    assert housekeeping.referenced_versions(store, "default", "sales_eu") == {0}


def test_many_small_commits_are_checkpointed_and_old_log_entries_kept(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """A checkpoint every ``delta.checkpointInterval`` commits (100 by default; 10 here, as
    100+ commits to S3 took 76-96 s of the suite) keeps opening the table cheap; log entries
    are never deleted by age, even where the table's log retention says they expired, so a
    version a run references stays readable (vacuum keeps its files)."""
    _append(store, artifacts, 1)
    dt = lake.open_delta(store, artifacts, "default", "sales")
    dt.alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 0 seconds", "delta.checkpointInterval": "10"}
    )
    _append(store, artifacts, 15)
    with store.session() as session:
        project_id = projects.get(session, "default").id
    table_id = lake.get_table(store, artifacts, "default", "sales").id
    log = [
        o.key.rsplit("/", 1)[1]
        for o in artifacts.list(layout.lake_table_prefix(project_id, table_id))
        if "/_delta_log/" in o.key
    ]
    assert "00000000000000000009.checkpoint.parquet" in log
    assert "00000000000000000000.json" in log
    assert _rows(store, artifacts, 0) == [0, 1]
    housekeeping.vacuum(
        store, artifacts, "default", "sales", retention_hours=0, dry_run=False, actor=ACTOR
    )
    assert lake.open_delta(store, artifacts, "default", "sales", 0).version() == 0
