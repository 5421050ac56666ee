"""Dataset snapshots: stable content hashes, pinned sources, dedupe, frozen splits and
refused tampering, on SQLite and PostgreSQL, a local folder and S3."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError as PydanticValidationError

from loopml.core import layout
from loopml.core.datasets import DatasetRef, DatasetVersionResult, SplitSpec
from loopml.core.errors import (
    ArtifactIntegrityError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from loopml.core.ids import new_id
from loopml.data import datasets, lake
from loopml.data.canonical import canonicalize, content_hash
from loopml.data.split import assign, scores
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, projects
from loopml.store import datasets as dataset_rows
from loopml.store.datasets import StaleDatasetError, VersionDraft

ACTOR = "tester"
P = "default"


def _rows(n: int = 200) -> pa.Table:
    ids = np.arange(n)
    return pa.table(
        {
            "id": ids,
            "amount": np.where(ids % 11 == 0, np.nan, ids * 0.25),
            "label": np.where(ids % 4 == 0, "churn", "stay"),
            "active": ids % 3 == 0,
        }
    )


def _ingest(store: MetadataStore, artifacts: ArtifactStore, table: str, data: pa.Table) -> int:
    commit = lake.ingest_arrow(store, artifacts, P, table, data, actor=ACTOR)
    return commit.version


def _create(
    store: MetadataStore, artifacts: ArtifactStore, name: str, source: str, **kw: Any
) -> DatasetVersionResult:
    return datasets.create_version(store, artifacts, P, name, source, actor=ACTOR, **kw)


def _dataset_files(store: MetadataStore, artifacts: ArtifactStore) -> list[str]:
    with store.session() as session:
        project_id = projects.get(session, P).id
    return [o.key for o in artifacts.list(f"{layout.project_prefix(project_id)}/datasets")]


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _event_types(store: MetadataStore) -> list[str]:
    with store.session() as session:
        return [e.type for e in events.list_(session, type="dataset.*", limit=1000).items]


# ------------------------------------------------------------------ content hash (no I/O)


def _typed() -> pa.Table:
    return pa.table(
        {
            "i": pa.array([3, None, -7, 2**40], pa.int64()),
            "u": pa.array([1, 2, None, 2**64 - 1], pa.uint64()),
            "f": pa.array([1.5, float("nan"), None, float("inf")]),
            "s": pa.array(["b", None, "", "é"]),
            "b": pa.array([True, False, None, True]),
            "bin": pa.array([b"\x00", None, b"xy", b""], pa.binary()),
            "d": pa.array([dt.date(2024, 1, 2), None, dt.date(1970, 1, 1), dt.date(2030, 5, 6)]),
            "ts": pa.array(
                [
                    dt.datetime(2024, 1, 1, 12),
                    None,
                    dt.datetime(2024, 1, 1),
                    dt.datetime(1999, 1, 1),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "dec": pa.array(
                [decimal.Decimal("1.50"), None, decimal.Decimal("-2.25"), decimal.Decimal("0")],
                pa.decimal128(10, 2),
            ),
            "n": pa.nulls(4),
        }
    )


def test_the_hash_ignores_row_order_chunking_and_type_spelling() -> None:
    table = _typed()
    expected = content_hash(table)
    assert len(expected) == 64
    rng = np.random.default_rng(7)
    for _ in range(5):
        shuffled = table.take(rng.permutation(table.num_rows))
        chunked = pa.concat_tables([shuffled.slice(0, 1), shuffled.slice(1)])
        assert chunked.column("i").num_chunks == 2
        assert content_hash(chunked) == expected
    at = table.schema.get_field_index("s")
    spelled = table.set_column(at, "s", pc.cast(table.column("s"), pa.large_string()))
    assert content_hash(spelled) == expected
    encoded = table.set_column(at, "s", table.column("s").dictionary_encode())
    assert content_hash(encoded) == expected
    assert content_hash(canonicalize(table), ordered=True) == expected


def test_equal_floats_hash_the_same() -> None:
    zero = pa.table({"x": [0.0, 1.0], "y": ["a", "a"]})
    negative_zero = pa.table({"x": [1.0, -0.0], "y": ["a", "a"]})
    assert content_hash(zero) == content_hash(negative_zero)
    quiet = np.array([np.nan, 1.0])
    other_nan = quiet.copy()
    other_nan.view(np.uint64)[0] = 0x7FF8000000000BAD
    assert np.isnan(other_nan[0])
    assert other_nan.tobytes() != quiet.tobytes()
    assert content_hash(pa.table({"x": quiet})) == content_hash(pa.table({"x": other_nan}))


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [
        ("i", 0, 4),
        ("u", 3, 2**64 - 2),
        ("f", 0, 1.5000000000000002),
        ("f", 1, 0.0),
        ("s", 2, None),
        ("s", 3, "e"),
        ("b", 1, True),
        ("bin", 3, b"\x00"),
        ("d", 0, dt.date(2024, 1, 3)),
        ("ts", 0, dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=dt.UTC)),
        ("dec", 0, decimal.Decimal("1.51")),
    ],
)
def test_one_changed_value_changes_the_hash(column: str, row: int, value: object) -> None:
    table = _typed()
    values = table.column(column).to_pylist()
    values[row] = value
    changed = table.set_column(
        table.schema.get_field_index(column),
        column,
        pa.array(values, table.schema.field(column).type),
    )
    assert content_hash(changed) != content_hash(table)


def test_names_types_order_and_duplicates_change_the_hash() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    base = content_hash(table)
    assert content_hash(table.rename_columns(["a", "c"])) != base
    assert content_hash(table.select(["b", "a"])) != base
    assert content_hash(table.set_column(0, "a", pa.array([1, 2], pa.int32()))) != base
    assert content_hash(pa.concat_tables([table, table.slice(0, 1)])) != base
    # Values that move between columns or rows are another table.
    assert content_hash(pa.table({"a": [1, 2], "b": ["y", "x"]})) != base


def test_the_hash_is_the_same_in_another_process(tmp_path: Path) -> None:
    table = _typed()
    pq.write_table(table.take([3, 1, 0, 2]), tmp_path / "t.parquet")
    code = (
        "import pyarrow.parquet as pq, sys\n"
        "from loopml.data.canonical import content_hash\n"
        "print(content_hash(pq.read_table(sys.argv[1])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.parquet")],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.strip() == content_hash(table)


def test_nested_and_repeated_columns_are_refused() -> None:
    with pytest.raises(ValidationError, match="flat columns"):
        content_hash(pa.table({"l": pa.array([[1], [2]])}))
    with pytest.raises(ValidationError, match="repeats"):
        content_hash(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]))


# ------------------------------------------------------------------ split (no I/O)


def _splitmix64(x: int) -> int:
    mask = 2**64 - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_split_scores_are_splitmix64_in_plain_integers() -> None:
    # Pinned: a change here changes every frozen eval set made from now on.
    assert scores(3, 0).tolist() == [
        12035550249420947055,
        627405149472732430,
        15549969042648332857,
    ]
    for seed in (0, 1, 2**63 - 1):
        salt = _splitmix64(seed)
        assert scores(50, seed).tolist() == [_splitmix64(i ^ salt) for i in range(50)]


def test_a_stratified_split_keeps_each_class_share() -> None:
    labels = ["a"] * 700 + ["b"] * 290 + ["c"] * 8 + ["d"] * 2
    table = pa.table({"id": range(1000), "y": labels})
    made = assign(table, SplitSpec(eval_fraction=0.2, seed=3, stratify="y"))
    held = np.array(labels)[made.is_eval]
    counts = {k: int((held == k).sum()) for k in "abcd"}
    assert counts == {"a": 140, "b": 58, "c": 2, "d": 1}
    assert [(s.value, s.train, s.eval) for s in made.strata] == [
        ("a", 560, 140),
        ("b", 232, 58),
        ("c", 6, 2),
        ("d", 1, 1),
    ]
    assert made.classes == 4
    plain = assign(table, SplitSpec(eval_fraction=0.2, seed=3))
    assert int(plain.is_eval.sum()) == 200
    assert assign(table, SplitSpec(eval_fraction=0.2, seed=3)).is_eval.tolist() == (
        plain.is_eval.tolist()
    )
    assert assign(table, SplitSpec(eval_fraction=0.2, seed=4)).is_eval.tolist() != (
        plain.is_eval.tolist()
    )


def test_impossible_splits_say_why() -> None:
    with pytest.raises(ValidationError, match="at least 2 rows"):
        assign(pa.table({"y": ["a"]}), SplitSpec())
    table = pa.table({"y": ["a", "a", "b", None, None]})
    with pytest.raises(ValidationError, match="class 'b' has 1 row"):
        assign(table, SplitSpec(stratify="y"))
    with pytest.raises(ValidationError, match="no such column"):
        assign(table, SplitSpec(stratify="z"))
    nulls_are_a_class = pa.table({"y": ["a", "a", None, None]})
    made = assign(nulls_are_a_class, SplitSpec(eval_fraction=0.5, stratify="y"))
    assert made.is_eval.tolist().count(True) == 2
    assert {s.value for s in made.strata} == {"a", None}
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(PydanticValidationError):
            SplitSpec(eval_fraction=fraction)


def test_dataset_refs_parse_and_refuse() -> None:
    assert DatasetRef.parse("churn_train") == DatasetRef(name="churn_train")
    assert DatasetRef.parse("churn_train@latest").version is None
    assert str(DatasetRef.parse("churn_train@3")) == "churn_train@3"
    for bad in ("Churn", "churn@0", "churn@-1", "churn@x", "churn@1@2", "a" * 64, ""):
        with pytest.raises(ValidationError):
            DatasetRef.parse(bad)


# ------------------------------------------------------------------ snapshots


def test_the_same_rows_hash_the_same_whatever_their_order_and_files(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    rows = _rows()
    _ingest(store, artifacts, "churn", rows)
    first = _create(store, artifacts, "snap", "churn", description="first")
    assert (first.version, first.created, first.row_count) == (1, True, 200)
    # The same rows, reversed and landed as three commits (three files).
    backwards = rows.take(np.arange(199, -1, -1))
    for part in (backwards.slice(0, 50), backwards.slice(50, 100), backwards.slice(150)):
        _ingest(store, artifacts, "churn_copy", part)
    other = _create(store, artifacts, "snap_copy", "churn_copy")
    assert other.content_hash == first.content_hash
    # Stored in canonical order (here: by id, the first column), whatever the source's.
    copied = datasets.read_version(store, artifacts, P, "snap_copy")
    assert copied.column("id").to_pylist() == list(range(200))
    assert other.sources[0].version == 2
    again = _create(store, artifacts, "snap", "churn@0")
    assert (again.version, again.created, again.id) == (1, False, first.id)
    stored = datasets.read_version(store, artifacts, P, "snap@1")
    assert sorted(stored.column("id").to_pylist()) == list(range(200))
    assert content_hash(stored) == first.content_hash
    assert datasets.get_dataset(store, P, "snap").description == "first"
    assert _event_types(store).count("dataset.version.created") == 2


def test_a_changed_value_makes_a_new_version(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    rows = _rows(50)
    _ingest(store, artifacts, "churn", rows)
    first = _create(store, artifacts, "snap", "churn")
    amounts = rows.column("amount").to_pylist()
    amounts[10] = 99.0
    changed = rows.set_column(1, "amount", pa.array(amounts))
    lake.ingest_arrow(store, artifacts, P, "churn", changed, mode="overwrite", actor=ACTOR)
    second = _create(store, artifacts, "snap", "churn")
    assert (second.version, second.created) == (2, True)
    assert second.content_hash != first.content_hash
    assert [s.version for s in second.sources] == [1]
    assert datasets.get_version(store, P, "snap@1").content_hash == first.content_hash
    page = datasets.list_versions(store, P, "snap", limit=1)
    assert [v.version for v in page.items] == [2]
    assert page.next_cursor == "2"
    rest = datasets.list_versions(store, P, "snap", cursor=page.next_cursor)
    assert [v.version for v in rest.items] == [1]


def test_a_query_pins_the_versions_it_read(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, "churn", _rows(20))
    _ingest(store, artifacts, "churn", _rows(10))
    _ingest(store, artifacts, "regions", pa.table({"id": [1, 2], "region": ["n", "s"]}))
    query = (
        "SELECT c.id, c.label, r.region FROM churn c "
        "LEFT JOIN regions r ON c.id = r.id WHERE c.id < 5"
    )
    made = _create(store, artifacts, "joined", query)
    assert made.query == query
    assert made.source == query
    assert [(s.table, s.version) for s in made.sources] == [("churn", 1), ("regions", 0)]
    assert made.row_count == 10
    old = _create(store, artifacts, "old", "churn@0")
    assert (old.query, [(s.table, s.version) for s in old.sources]) == (None, [("churn", 0)])
    assert old.row_count == 20
    with pytest.raises(NotFoundError):
        _create(store, artifacts, "missing", "churn@7")
    with pytest.raises(ValidationError, match="query failed"):
        _create(store, artifacts, "bad", "SELECT nope FROM churn")
    with pytest.raises(ValidationError, match="flat columns"):
        _create(store, artifacts, "nested", "SELECT list(id) AS ids FROM churn")
    with pytest.raises(ValidationError, match="invalid dataset name"):
        _create(store, artifacts, "Bad-Name", "churn")
    assert datasets.list_datasets(store, P).items[0].name == "joined"
    assert {d.name for d in datasets.list_datasets(store, P).items} == {"joined", "old"}


def test_a_split_is_frozen_with_its_own_hash(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, "churn", _rows(200))
    spec = SplitSpec(eval_fraction=0.25, seed=5, stratify="label")
    made = _create(store, artifacts, "snap", "churn", split=spec)
    split = made.split
    assert split is not None
    assert split.spec == spec
    # Per class, round(0.25 * n): 13 of 50 'churn' and 38 of 150 'stay'.
    assert (split.train_rows, split.eval_rows) == (149, 51)
    held = datasets.read_version(store, artifacts, P, "snap", part="eval")
    train = datasets.read_version(store, artifacts, P, "snap@1", part="train")
    assert held.column("label").to_pylist().count("churn") == 13
    assert content_hash(held) == split.eval_hash != split.train_hash == content_hash(train)
    everything = set(held.column("id").to_pylist()) | set(train.column("id").to_pylist())
    assert everything == set(range(200))
    assert (train.num_rows, held.num_rows) == (149, 51)
    # The same source and spec elsewhere: the same eval set. Another seed: another one.
    same = _create(store, artifacts, "snap_again", "churn", split=spec)
    assert same.split is not None
    assert same.split.eval_hash == split.eval_hash
    reseeded = _create(
        store, artifacts, "snap_seed", "churn", split=spec.model_copy(update={"seed": 6})
    )
    assert reseeded.split is not None
    assert reseeded.split.eval_hash != split.eval_hash
    # Frozen: the same spec answers as it is, another one is refused.
    unchanged = datasets.split_version(store, artifacts, P, "snap@1", spec, actor=ACTOR)
    assert (unchanged.created, unchanged.split) == (False, split)
    with pytest.raises(ConflictError, match="already has a frozen split"):
        datasets.split_version(store, artifacts, P, "snap@1", SplitSpec(), actor=ACTOR)
    # Re-creating with the same split dedupes; asking for another split makes a version.
    assert _create(store, artifacts, "snap", "churn", split=spec).created is False
    assert _create(store, artifacts, "snap", "churn").created is False
    other = _create(store, artifacts, "snap", "churn", split=SplitSpec(eval_fraction=0.1))
    assert (other.version, other.content_hash) == (2, made.content_hash)


def test_a_split_added_later_is_frozen_too(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, "churn", _rows(40))
    _create(store, artifacts, "snap", "churn")
    with pytest.raises(NotFoundError, match="no train/eval split"):
        datasets.read_version(store, artifacts, P, "snap", part="eval")
    with pytest.raises(ValidationError, match="no such column"):
        datasets.split_version(store, artifacts, P, "snap", SplitSpec(stratify="nope"), actor=ACTOR)
    spec = SplitSpec(eval_fraction=0.5, seed=1)
    done = datasets.split_version(store, artifacts, P, "snap@1", spec, actor=ACTOR)
    assert done.created
    assert done.split is not None
    assert done.split.eval_rows == 20
    assert datasets.get_version(store, P, "snap").split == done.split
    assert datasets.read_version(store, artifacts, P, "snap", part="eval").num_rows == 20
    with pytest.raises(ConflictError):
        datasets.split_version(store, artifacts, P, "snap", SplitSpec(seed=2), actor=ACTOR)
    assert _event_types(store).count("dataset.version.split") == 1
    # data, train and eval: a refused split wrote nothing
    assert len(_dataset_files(store, artifacts)) == 3


def test_a_refused_snapshot_leaves_nothing_behind(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, "churn", pa.table({"id": [1, 2], "y": ["a", "b"]}))
    with pytest.raises(ValidationError, match="at least 2 rows"):
        _create(store, artifacts, "snap", "SELECT * FROM churn LIMIT 1", split=SplitSpec())
    with pytest.raises(ValidationError, match="no such column"):
        _create(store, artifacts, "snap", "SELECT id FROM churn", split=SplitSpec(stratify="y"))
    with pytest.raises(ValidationError, match="class 'a' has 1 row"):
        _create(store, artifacts, "snap", "churn", split=SplitSpec(stratify="y"))
    assert _dataset_files(store, artifacts) == []
    assert datasets.list_datasets(store, P).items == []
    assert _event_types(store) == []


def test_a_tampered_snapshot_is_refused(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, "churn", _rows(30))
    made = _create(store, artifacts, "snap", "churn", split=SplitSpec(eval_fraction=0.3))
    plain = _create(store, artifacts, "plain", "churn")
    assert made.split is not None
    rows = datasets.read_version(store, artifacts, P, "snap")
    ids = rows.column("id").to_pylist()
    ids[0] = 1000
    forged = _parquet(rows.set_column(0, "id", pa.array(ids)))
    for key in (made.data_key, plain.data_key):
        artifacts.write_bytes(key, forged)
    with pytest.raises(ArtifactIntegrityError, match="does not match its recorded content hash"):
        datasets.read_version(store, artifacts, P, "snap")
    with pytest.raises(ArtifactIntegrityError):
        datasets.split_version(store, artifacts, P, "plain", SplitSpec(), actor=ACTOR)
    # Reordered rows are refused too: the stored file is in canonical order.
    artifacts.write_bytes(plain.data_key, _parquet(rows.take(np.arange(29, -1, -1))))
    with pytest.raises(ArtifactIntegrityError):
        datasets.read_version(store, artifacts, P, "plain")
    artifacts.write_bytes(plain.data_key, _parquet(rows))
    restored = datasets.read_version(store, artifacts, P, "plain")
    assert restored.column("id").to_pylist() == rows.column("id").to_pylist()
    artifacts.write_bytes(made.split.keys["eval"], b"not parquet")
    with pytest.raises(ArtifactIntegrityError):
        datasets.read_version(store, artifacts, P, "snap", part="eval")
    artifacts.delete(made.split.keys["train"])
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        datasets.read_version_file(store, artifacts, P, "snap", part="train")


def test_delete_frees_rows_and_files(store: MetadataStore, artifacts: ArtifactStore) -> None:
    _ingest(store, artifacts, "churn", _rows(10))
    _create(store, artifacts, "snap", "churn", split=SplitSpec(eval_fraction=0.5))
    _create(store, artifacts, "keep", "churn")
    assert len(_dataset_files(store, artifacts)) == 4
    assert datasets.delete_dataset(store, artifacts, P, "snap", actor=ACTOR) == 3
    assert len(_dataset_files(store, artifacts)) == 1
    with pytest.raises(NotFoundError):
        datasets.get_dataset(store, P, "snap")
    with pytest.raises(NotFoundError):
        datasets.get_version(store, P, "snap@1")
    assert _event_types(store)[-1] == "dataset.deleted"
    remade = _create(store, artifacts, "snap", "churn")
    assert (remade.version, remade.created) == (1, True)


def test_an_empty_table_snapshots_with_its_schema(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    from loopml.core.lake import ColumnInfo

    lake.create_table(
        store,
        artifacts,
        P,
        "empty",
        columns=[ColumnInfo(name="x", type="double"), ColumnInfo(name="s", type="string")],
        actor=ACTOR,
    )
    made = _create(store, artifacts, "snap", "empty")
    assert (made.row_count, [c.name for c in made.columns]) == (0, ["x", "s"])
    assert made.profile.column("x").count == 0
    assert made.profile.column("x").histogram is None
    assert json.loads(json.dumps(made.profile.model_dump(mode="json")))["rows"] == 0
    with pytest.raises(ValidationError, match="at least 2 rows"):
        datasets.split_version(store, artifacts, P, "snap", SplitSpec(), actor=ACTOR)


def test_the_store_records_a_version_once_and_only_under_its_dataset_id(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, "churn", _rows(10))
    made = _create(store, artifacts, "snap", "churn")
    draft = VersionDraft(
        id=new_id(),
        source="churn",
        query=None,
        sources=made.sources,
        row_count=made.row_count,
        columns=made.columns,
        content_hash=made.content_hash,
        profile=made.profile,
        data_key=made.data_key,
        split=None,
    )
    dataset_id = datasets.get_dataset(store, P, "snap").id
    # What a concurrent writer finds under the lock: the same rows are not recorded twice.
    with store.session() as session:
        found, created = dataset_rows.add_version(
            session, P, "snap", draft, dataset_id=dataset_id, actor=ACTOR
        )
    assert (found.id, created) == (made.id, False)
    # Files written for a dataset id that is no longer the dataset's are never recorded.
    with pytest.raises(StaleDatasetError), store.session() as session:
        dataset_rows.add_version(session, P, "snap", draft, dataset_id=new_id(), actor=ACTOR)
    other = dataclasses.replace(draft, content_hash="0" * 64)
    with pytest.raises(StaleDatasetError), store.session() as session:
        dataset_rows.add_version(session, P, "snap", other, dataset_id=new_id(), actor=ACTOR)
    assert [v.version for v in datasets.list_versions(store, P, "snap").items] == [1]
