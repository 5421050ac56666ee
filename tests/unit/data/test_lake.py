"""Lake tables on real Delta tables: a local folder and moto's S3 server, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from loopml.core import layout
from loopml.core.errors import NotFoundError, ValidationError
from loopml.data import files, lake
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, projects

ACTOR = "tester"


def _ingest(store: MetadataStore, artifacts: ArtifactStore, data: pa.Table, **kw: object):  # type: ignore[no-untyped-def]
    return lake.ingest_arrow(store, artifacts, "default", "sales", data, actor=ACTOR, **kw)  # type: ignore[arg-type]


def test_first_ingest_creates_the_table_and_infers_its_schema(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    commit = _ingest(store, artifacts, pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]}))
    assert (commit.version, commit.rows_added) == (0, 3)
    table = lake.get_table(store, artifacts, "default", "sales")
    assert (table.version, table.row_count) == (0, 3)
    assert [(c.name, c.type) for c in table.columns] == [("id", "int64"), ("name", "string")]
    assert lake.read_dataset(store, artifacts, "default", "sales").count_rows() == 3
    with store.session() as session:
        appended = events.list_(session, type="table.*").items
    assert [e.type for e in appended] == ["table.created", "table.appended"]
    assert appended[1].payload == {"rows": 3, "version": 0, "mode": "append"}


def test_safe_cast_is_applied_and_versions_are_readable(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"price": [1.5, 2.5]}))
    commit = _ingest(store, artifacts, pa.table({"price": pa.array([3, 4], pa.int32())}))
    assert commit.version == 1
    data = lake.read_dataset(store, artifacts, "default", "sales").to_table()
    assert data.schema.field("price").type == pa.float64()
    assert sorted(data.column("price").to_pylist()) == [1.5, 2.5, 3.0, 4.0]
    old = lake.read_dataset(store, artifacts, "default", "sales", version=0)
    assert old.count_rows() == 2


def test_unsafe_type_is_refused_with_column_types_and_rows(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    with pytest.raises(ValidationError) as caught:
        _ingest(store, artifacts, pa.table({"id": ["x", None, "y"], "name": ["c", "d", "e"]}))
    problem = caught.value.details["columns"][0]
    assert problem["column"] == "id"
    assert (problem["expected"], problem["found"]) == ("int64", "string")
    assert problem["rows"] == [{"row": 0, "value": "x"}, {"row": 2, "value": "y"}]
    assert "'id' expected int64, found string" in caught.value.message
    assert lake.get_table(store, artifacts, "default", "sales").version == 0


def test_a_csv_refused_names_the_rows_that_do_not_convert(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    _ingest(store, artifacts, pa.table({"age": [30, 41], "name": ["a", "b"]}))
    lines = ["age,name", *(f"{20 + i},n{i}" for i in range(9)), "forty,n9", "33,n10"]
    source = tmp_path / "people.csv"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError) as caught:
        _ingest(store, artifacts, files.read_upload(source))
    assert caught.value.details["columns"][0]["rows"] == [{"row": 9, "value": "forty"}]
    assert "'age' expected int64, found string at line 11 ('forty')" in caught.value.message


def test_missing_and_extra_columns_are_refused_unless_overwriting(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"a": [1], "b": [2]}))
    with pytest.raises(ValidationError) as caught:
        _ingest(store, artifacts, pa.table({"a": [1], "c": [3]}))
    columns = {p["column"]: p for p in caught.value.details["columns"]}
    assert columns["b"]["found"] is None
    assert columns["c"]["expected"] is None
    commit = _ingest(store, artifacts, pa.table({"c": ["new"]}), mode="overwrite")
    assert commit.mode == "overwrite"
    table = lake.get_table(store, artifacts, "default", "sales")
    assert (table.row_count, [c.name for c in table.columns]) == (1, ["c"])


def test_history_and_head(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, pa.table({"a": [1, 2, 3]}))
    _ingest(store, artifacts, pa.table({"a": [4]}))
    commits = lake.history(store, artifacts, "default", "sales")
    assert [(c.version, c.rows_added, c.mode) for c in commits] == [
        (1, 1, "append"),
        (0, 3, "append"),
    ]
    assert lake.head(store, artifacts, "default", "sales", 2).num_rows == 2


def test_the_row_reconciles_with_a_commit_it_did_not_see(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """A process that died between the Delta commit and the row update (RELIABILITY 23)."""
    _ingest(store, artifacts, pa.table({"a": [1]}))
    with store.session() as session:
        project_id = projects.get(session, "default").id
    table = lake.list_tables(store, "default")[0]
    loc = artifacts.native_location(layout.lake_table_prefix(project_id, table.id))
    write_deltalake(
        loc.uri, pa.table({"a": [2, 3]}), mode="append", storage_options=loc.storage_options
    )
    assert lake.list_tables(store, "default")[0].version == 0  # the stale cache
    seen = lake.get_table(store, artifacts, "default", "sales")
    assert (seen.version, seen.row_count) == (1, 3)
    commit = _ingest(store, artifacts, pa.table({"a": [4]}))
    assert commit.version == 2
    assert lake.get_table(store, artifacts, "default", "sales").row_count == 4


def test_delete_frees_the_folder(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, pa.table({"a": [1]}))
    _ingest(store, artifacts, pa.table({"a": [2]}))
    with store.session() as session:
        project_id = projects.get(session, "default").id
    prefix = layout.lake_table_prefix(project_id, lake.list_tables(store, "default")[0].id)
    assert list(artifacts.list(prefix))
    assert lake.delete_table(store, artifacts, "default", "sales", actor=ACTOR) >= 4
    assert list(artifacts.list(prefix)) == []
    with pytest.raises(NotFoundError):
        lake.get_table(store, artifacts, "default", "sales")
    assert lake.list_tables(store, "default") == []


def test_concurrent_appends_each_get_their_own_version(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    """Two writers race for the next log entry; conditional puts on S3 keep both."""
    _ingest(store, artifacts, pa.table({"a": [0]}))
    errors: list[Exception] = []

    def append(value: int) -> None:
        try:
            _ingest(store, artifacts, pa.table({"a": [value]}))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(i,)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = lake.get_table(store, artifacts, "default", "sales")
    assert (table.version, table.row_count) == (3, 4)
    values = lake.read_dataset(store, artifacts, "default", "sales").to_table()
    assert sorted(values.column("a").to_pylist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_files_of_each_format(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"upload.{fmt}"
    if fmt == "csv":
        path.write_text("id,score\n1,0.5\n2,1.5\n")
    elif fmt == "jsonl":
        path.write_text('{"id": 1, "score": 0.5}\n{"id": 2, "score": 1.5}\n')
    else:
        pq.write_table(pa.table({"id": [1, 2], "score": [0.5, 1.5]}), path)
    commit = _ingest(store, artifacts, files.read_upload(path))  # type: ignore[arg-type]
    assert commit.rows_added == 2
    data = lake.read_dataset(store, artifacts, "default", "sales").to_table()
    assert data.schema.field("id").type == pa.int64()
    assert sorted(data.column("score").to_pylist()) == [0.5, 1.5]


def _encodings(store: MetadataStore, artifacts: ArtifactStore) -> dict[str, set[str]]:
    """Each column's Parquet encodings across the table's files."""
    dataset = lake.read_dataset(store, artifacts, "default", "sales")
    found: dict[str, set[str]] = {}
    for path in dataset.files:
        meta = pq.ParquetFile(dataset.filesystem.open_input_file(path)).metadata
        for group in range(meta.num_row_groups):
            for index in range(meta.num_columns):
                column = meta.row_group(group).column(index)
                found.setdefault(column.path_in_schema, set()).update(column.encodings)
    return found


def _dictionary(encodings: set[str]) -> bool:
    return any("DICTIONARY" in encoding for encoding in encodings)


def test_columns_whose_values_mostly_differ_are_written_without_a_dictionary(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    rows = 4000
    cities = ["paris", "oslo", "lima"]
    data = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "half": pa.array([i // 2 for i in range(rows)], pa.int64()),  # exactly half distinct
            "city": [cities[i % 3] for i in range(rows)],
            "code": [f"c{i}" for i in range(rows)],
            "tags": [[i % 2, i] for i in range(rows)],  # nested: the writer's default
        }
    )

    _ingest(store, artifacts, data)

    encodings = _encodings(store, artifacts)
    assert not _dictionary(encodings["id"])
    assert not _dictionary(encodings["code"])
    assert _dictionary(encodings["half"])
    assert _dictionary(encodings["city"])
    assert (
        lake.read_dataset(store, artifacts, "default", "sales")
        .to_table()
        .sort_by("id")
        .equals(data)
    )


def test_a_small_write_keeps_the_default_dictionaries(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"id": pa.array(range(999), pa.int64())}))

    assert _dictionary(_encodings(store, artifacts)["id"])


def test_a_new_column_made_text_by_a_typo_warns_with_its_rows_or_is_refused(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    lines = ["age,name", *(f"{20 + i},n{i}" for i in range(9)), "forty,n9", "33,n10"]
    source = tmp_path / "people.csv"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValidationError, match=r"refused \(strict\): column 'age' is stored"):
        _ingest(store, artifacts, files.read_upload(source), strict=True)
    with pytest.raises(NotFoundError):
        lake.get_table(store, artifacts, "default", "sales")

    commit = _ingest(store, artifacts, files.read_upload(source))
    assert commit.warnings == [
        "column 'age' is stored as text: line 11 ('forty') is not a number, while 10 other "
        "values are: fix them and ingest again in overwrite mode (`loopml ingest --mode "
        "overwrite`; API: mode=overwrite), or refuse such files with strict mode (`--strict`; "
        "API: strict=true)"
    ]
    names_only = _ingest(store, artifacts, pa.table({"name": ["a", "b"]}), mode="overwrite")
    assert names_only.warnings == []
