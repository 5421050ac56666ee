"""SQL transforms on real lake tables: definitions, runs with exact input versions, append and
overwrite, lineage chains, and refusals that write nothing; on both metadata dialects and on
a local folder and moto's S3 server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.transforms import TableVersion
from loopml.data import housekeeping, lake, transforms, validation
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

ACTOR = "tester"
P = "default"
TOTALS = "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"


def _ingest(store: MetadataStore, artifacts: ArtifactStore, table: str, **columns: Any) -> int:
    commit = lake.ingest_arrow(store, artifacts, P, table, pa.table(columns), actor=ACTOR)
    return commit.version


def _rows(store: MetadataStore, artifacts: ArtifactStore, table: str) -> list[dict[str, Any]]:
    data = lake.read_dataset(store, artifacts, P, table).to_table()
    return sorted(data.to_pylist(), key=str)


def _event_types(store: MetadataStore) -> list[str]:
    with store.session() as session:
        page = events.list_(session, type="transform.*", project=P, limit=1000)
    return [e.type for e in page.items]


def _tables(store: MetadataStore) -> list[str]:
    return [t.name for t in lake.list_tables(store, P)]


@pytest.fixture
def sales(store: MetadataStore, artifacts: ArtifactStore) -> ArtifactStore:
    """``sales`` at version 1 (two ingests) and ``regions`` at version 0."""
    _ingest(store, artifacts, "sales", region=["n", "s"], amount=[1.0, 2.0])
    _ingest(store, artifacts, "sales", region=["n"], amount=[4.0])
    _ingest(store, artifacts, "regions", region=["n", "s"], name=["North", "South"])
    return artifacts


def test_first_apply_creates_the_table_and_pins_every_input_version(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    sql = (
        "SELECT r.name, sum(s.amount) AS total FROM sales s "
        "JOIN regions@0 r USING (region) GROUP BY r.name"
    )
    run = transforms.apply(store, sales, P, "by_name", sql=sql, into="totals", actor=ACTOR)
    assert run.inputs == [
        TableVersion(table="regions", version=0),
        TableVersion(table="sales", version=1),
    ]
    assert (run.output_table, run.output_version, run.rows, run.revision) == ("totals", 0, 2, 1)
    assert (run.transform, run.sql, run.actor) == ("by_name", sql, ACTOR)
    assert _rows(store, sales, "totals") == [
        {"name": "North", "total": 5.0},
        {"name": "South", "total": 2.0},
    ]
    saved = transforms.get_transform(store, P, "by_name")
    assert (saved.sql, saved.into_table, saved.mode, saved.revision) == (
        sql,
        "totals",
        "overwrite",
        1,
    )
    assert _event_types(store) == ["transform.defined", "transform.applied"]


def test_reapply_after_new_rows_writes_a_new_version_from_the_new_inputs(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    first = transforms.apply(store, sales, P, "totals", sql=TOTALS, into="totals", actor=ACTOR)
    _ingest(store, sales, "sales", region=["s"], amount=[10.0])
    again = transforms.apply(store, sales, P, "totals", actor=ACTOR)
    assert first.inputs == [TableVersion(table="sales", version=1)]
    assert again.inputs == [TableVersion(table="sales", version=2)]
    assert (again.output_version, again.revision, again.sql) == (1, 1, TOTALS)
    assert _rows(store, sales, "totals") == [
        {"region": "n", "total": 5.0},
        {"region": "s", "total": 12.0},
    ]
    old = lake.read_dataset(store, sales, P, "totals", 0).to_table().to_pylist()
    assert sorted(old, key=str) == [{"region": "n", "total": 5.0}, {"region": "s", "total": 2.0}]
    page = transforms.runs(store, P, "totals")
    assert [r.id for r in page.items] == [again.id, first.id]


def test_sql_table_or_mode_changes_bump_the_revision_and_a_description_does_not(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    transforms.apply(store, sales, P, "t", sql=TOTALS, into="totals", actor=ACTOR)
    same = transforms.apply(store, sales, P, "t", sql=TOTALS, actor=ACTOR)
    described = transforms.apply(store, sales, P, "t", description="per region", actor=ACTOR)
    assert (same.revision, described.revision) == (1, 1)
    assert transforms.get_transform(store, P, "t").description == "per region"
    changed = transforms.apply(
        store, sales, P, "t", sql="SELECT count(*) AS n FROM sales", actor=ACTOR
    )
    assert changed.revision == 2
    assert _rows(store, sales, "totals") == [{"n": 3}]
    defined = transforms.define(
        store, P, "t", sql=changed.sql, into="totals", mode="append", actor=ACTOR
    )
    assert (defined.revision, defined.mode, defined.description) == (3, "append", "per region")
    assert lake.get_table(store, sales, P, "totals").version == changed.output_version
    assert [r.revision for r in transforms.runs(store, P, "t").items] == [2, 1, 1, 1]


def test_append_adds_the_result_on_each_apply(store: MetadataStore, sales: ArtifactStore) -> None:
    sql = "SELECT count(*) AS n, max(amount) AS top FROM sales"
    first = transforms.apply(
        store, sales, P, "snap", sql=sql, into="snaps", mode="append", actor=ACTOR
    )
    _ingest(store, sales, "sales", region=["s"], amount=[9.0])
    second = transforms.apply(store, sales, P, "snap", actor=ACTOR)
    assert (first.output_version, second.output_version) == (0, 1)
    assert second.inputs == [TableVersion(table="sales", version=2)]
    assert _rows(store, sales, "snaps") == [{"n": 3, "top": 4.0}, {"n": 4, "top": 9.0}]


def test_append_may_not_read_its_output_but_overwrite_may(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    transforms.apply(store, sales, P, "all", sql="SELECT * FROM sales", into="copy", actor=ACTOR)
    with pytest.raises(ValidationError, match="cannot read its own output table 'copy'"):
        transforms.apply(
            store, sales, P, "all", sql="SELECT * FROM copy", mode="append", actor=ACTOR
        )
    with pytest.raises(ValidationError, match="own output"):
        transforms.apply(store, sales, P, "all", mode="append", into="sales", actor=ACTOR)
    assert transforms.get_transform(store, P, "all").revision == 1
    grown = "SELECT * FROM copy UNION ALL SELECT * FROM sales@0"
    run = transforms.apply(store, sales, P, "all", sql=grown, actor=ACTOR)
    assert run.inputs == [
        TableVersion(table="copy", version=0),
        TableVersion(table="sales", version=0),
    ]
    assert len(_rows(store, sales, "copy")) == 5


def test_lineage_walks_back_through_a_chain_of_transforms(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    b = transforms.apply(
        store, sales, P, "make_b", sql="SELECT * FROM sales WHERE amount > 1", into="b", actor=ACTOR
    )
    c = transforms.apply(
        store, sales, P, "make_c", sql="SELECT count(*) AS n FROM b", into="c", actor=ACTOR
    )
    found = transforms.lineage(store, sales, P, "c")
    assert (found.table, found.version) == ("c", 0)
    assert [r.id for r in found.runs] == [c.id, b.id]
    assert found.sources == [TableVersion(table="sales", version=1)]
    assert c.inputs == [TableVersion(table="b", version=0)]

    _ingest(store, sales, "sales", region=["s"], amount=[7.0])
    b2 = transforms.apply(store, sales, P, "make_b", actor=ACTOR)
    c2 = transforms.apply(store, sales, P, "make_c", actor=ACTOR)
    assert [r.id for r in transforms.lineage(store, sales, P, "c").runs] == [c2.id, b2.id]
    at_zero = transforms.lineage(store, sales, P, "c", 0)
    assert [r.id for r in at_zero.runs] == [c.id, b.id]
    assert at_zero.sources == [TableVersion(table="sales", version=1)]

    raw = transforms.lineage(store, sales, P, "sales", 1)
    assert (raw.runs, raw.sources) == ([], [TableVersion(table="sales", version=1)])
    assert transforms.produced_by(store, sales, P, "b", 0) == b
    assert transforms.produced_by(store, sales, P, "sales") is None
    short = transforms.lineage(store, sales, P, "c", max_runs=1)
    assert ([r.id for r in short.runs], short.truncated) == ([c2.id], True)


def test_compaction_after_a_write_keeps_its_lineage_and_an_ingest_ends_it(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    sql = "SELECT region FROM sales@0"
    transforms.apply(store, sales, P, "regs", sql=sql, into="regs", mode="append", actor=ACTOR)
    last = transforms.apply(store, sales, P, "regs", actor=ACTOR)
    report = housekeeping.compact(store, sales, P, "regs", actor=ACTOR)
    assert report.version == last.output_version + 1
    assert transforms.produced_by(store, sales, P, "regs") == last
    _ingest(store, sales, "regs", region=["by hand"])
    assert transforms.produced_by(store, sales, P, "regs") is None
    assert transforms.produced_by(store, sales, P, "regs", report.version) == last


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
        ("COPY sales TO '{target}'", "COPY"),
        ("SELECT 1 AS x; COPY sales TO '{target}'", "exactly one statement"),
        ("ATTACH '{target}' AS x", "ATTACH"),
        ("SELECT getenv('HOME') AS h", "getenv"),
        ("SELECT * FROM system.main.sales", "system.main.sales"),
    ],
)
def test_hostile_sql_is_refused_and_nothing_is_written(
    store: MetadataStore, sales: ArtifactStore, tmp_path: Path, sql: str, refused: str
) -> None:
    target = tmp_path / "out" / "stolen.csv"
    query = sql.format(target=target)
    with pytest.raises(ValidationError) as caught:
        transforms.apply(store, sales, P, "evil", sql=query, into="loot", actor=ACTOR)
    assert refused in caught.value.message
    with pytest.raises(ValidationError):
        transforms.define(store, P, "evil", sql=query, into="loot", actor=ACTOR)
    assert not (tmp_path / "out").exists()
    assert "loot" not in _tables(store)
    assert transforms.list_transforms(store, P) == []
    assert _event_types(store) == []


def test_a_write_the_output_contract_rejects_records_nothing(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    lake.create_table(store, sales, P, "positive", actor=ACTOR)
    validation.set_contract(
        store, P, "positive", {"columns": {"amount": {"min": 0}}, "on_fail": "reject"}, actor=ACTOR
    )
    negative = "SELECT region, -amount AS amount FROM sales"
    with pytest.raises(ValidationError, match="nothing was written"):
        transforms.apply(store, sales, P, "neg", sql=negative, into="positive", actor=ACTOR)
    assert transforms.list_transforms(store, P) == []
    ok = transforms.apply(
        store, sales, P, "neg", sql="SELECT * FROM sales", into="positive", actor=ACTOR
    )
    with pytest.raises(ValidationError, match="nothing was written"):
        transforms.apply(store, sales, P, "neg", sql=negative, actor=ACTOR)
    saved = transforms.get_transform(store, P, "neg")
    assert (saved.sql, saved.revision) == ("SELECT * FROM sales", 1)
    assert [r.id for r in transforms.runs(store, P, "neg").items] == [ok.id]
    assert lake.get_table(store, sales, P, "positive").version == ok.output_version
    assert _event_types(store) == ["transform.defined", "transform.applied"]


def test_an_empty_result_overwrites_with_an_empty_version_of_its_columns(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    transforms.apply(store, sales, P, "big", sql=TOTALS, into="big", actor=ACTOR)
    run = transforms.apply(
        store, sales, P, "big", sql=TOTALS.replace("GROUP", "WHERE amount > 99 GROUP"), actor=ACTOR
    )
    assert (run.output_version, run.rows) == (1, 0)
    info = lake.get_table(store, sales, P, "big")
    assert (info.version, info.row_count) == (1, 0)
    assert [c.name for c in info.columns] == ["region", "total"]
    fresh = transforms.apply(
        store,
        sales,
        P,
        "none",
        sql="SELECT amount FROM sales WHERE false",
        into="none",
        mode="append",
        actor=ACTOR,
    )
    assert (fresh.output_version, fresh.rows) == (0, 0)
    assert lake.get_table(store, sales, P, "none").columns[0].type == "double"


def test_result_types_the_lake_cannot_store(store: MetadataStore, sales: ArtifactStore) -> None:
    with pytest.raises(ValidationError, match="'t' \\(time64"):
        transforms.apply(
            store, sales, P, "x", sql="SELECT TIME '10:00' AS t", into="x", actor=ACTOR
        )
    with pytest.raises(ValidationError, match="'i' \\(list<l: month_day_nano"):
        transforms.apply(
            store, sales, P, "x", sql="SELECT [INTERVAL 1 DAY] AS i", into="x", actor=ACTOR
        )
    huge = "SELECT 18446744073709551615::UBIGINT AS u"
    with pytest.raises(ValidationError, match="DECIMAL"):
        transforms.apply(store, sales, P, "x", sql=huge, into="x", actor=ACTOR)
    assert "x" not in _tables(store)
    run = transforms.apply(
        store,
        sales,
        P,
        "x",
        sql="SELECT 200::UTINYINT AS u, 4000000000::UINTEGER AS w",
        into="x",
        actor=ACTOR,
    )
    assert run.rows == 1
    assert _rows(store, sales, "x") == [{"u": 200, "w": 4000000000}]
    assert [c.type for c in lake.get_table(store, sales, P, "x").columns] == ["int16", "int64"]


def test_unknown_projects_tables_versions_and_transforms_are_not_found(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        transforms.apply(store, sales, P, "x", sql="SELECT * FROM nope", into="x", actor=ACTOR)
    with pytest.raises(NotFoundError):
        transforms.apply(store, sales, P, "x", sql="SELECT * FROM sales@7", into="x", actor=ACTOR)
    with pytest.raises(NotFoundError, match="give --sql and --into"):
        transforms.apply(store, sales, P, "x", actor=ACTOR)
    with pytest.raises(NotFoundError):
        transforms.apply(
            store, sales, "no-project", "x", sql="SELECT 1 AS a", into="x", actor=ACTOR
        )
    for missing in (
        lambda: transforms.get_transform(store, P, "x"),
        lambda: transforms.runs(store, P, "x"),
        lambda: transforms.delete(store, P, "x", actor=ACTOR),
        lambda: transforms.lineage(store, sales, P, "nope"),
        lambda: transforms.lineage(store, sales, P, "sales", 2),
    ):
        with pytest.raises(NotFoundError):
            missing()
    assert "x" not in _tables(store)
    assert transforms.list_transforms(store, P) == []


def test_names_tables_and_first_definitions_are_checked(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    for bad_name in ("lineage", "Bad", "a-b", ""):
        with pytest.raises(ValidationError, match="transform name"):
            transforms.apply(store, sales, P, bad_name, sql="SELECT 1 AS a", into="x", actor=ACTOR)
    with pytest.raises(ValidationError, match="quarantined"):
        transforms.apply(
            store, sales, P, "x", sql="SELECT 1 AS a", into="sales__rejected", actor=ACTOR
        )
    with pytest.raises(ValidationError, match="table name"):
        transforms.define(store, P, "x", sql="SELECT 1 AS a", into="../x", actor=ACTOR)
    with pytest.raises(ValidationError, match="into is missing"):
        transforms.apply(store, sales, P, "x", sql="SELECT 1 AS a", actor=ACTOR)
    with pytest.raises(ValidationError, match="write mode"):
        transforms.apply(
            store, sales, P, "x", sql="SELECT 1 AS a", into="x", mode="merge", actor=ACTOR
        )
    with pytest.raises(ValidationError, match="1 to 100000"):
        transforms.define(store, P, "x", sql="   ", into="x", actor=ACTOR)
    assert transforms.list_transforms(store, P) == []
    assert "x" not in _tables(store)


def test_delete_drops_the_definition_and_runs_but_keeps_the_table(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    transforms.define(store, P, "a_def", sql=TOTALS, into="totals", actor=ACTOR)
    run = transforms.apply(store, sales, P, "gone", sql=TOTALS, into="totals", actor=ACTOR)
    assert [t.name for t in transforms.list_transforms(store, P)] == ["a_def", "gone"]
    deleted = transforms.delete(store, P, "gone", actor=ACTOR)
    assert deleted.name == "gone"
    with pytest.raises(NotFoundError):
        transforms.get_transform(store, P, "gone")
    assert lake.get_table(store, sales, P, "totals").version == run.output_version
    assert transforms.lineage(store, sales, P, "totals").runs == []
    assert _event_types(store)[-1] == "transform.deleted"
    again = transforms.apply(store, sales, P, "gone", sql=TOTALS, into="totals", actor=ACTOR)
    assert (again.revision, [r.id for r in transforms.runs(store, P, "gone").items]) == (
        1,
        [again.id],
    )


def test_a_table_recreated_under_the_same_name_does_not_inherit_lineage(
    store: MetadataStore, sales: ArtifactStore
) -> None:
    transforms.apply(store, sales, P, "t", sql=TOTALS, into="totals", actor=ACTOR)
    lake.delete_table(store, sales, P, "totals", actor=ACTOR)
    _ingest(store, sales, "totals", region=["x"], total=[0.0])
    assert transforms.produced_by(store, sales, P, "totals", 0) is None
