"""Streamed queries (``warehouse.stream_all``): the result comes back a batch at a time
through a file that is deleted after, within the same limits as any query, and spills to
disk only when the job allows it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from loopml.core.errors import NotFoundError, QueryTimeoutError, ValidationError
from loopml.data._sandbox import QueryLimits
from loopml.data.warehouse import WarehouseLimits, stream_all


def _nothing(name: str, version: int | None) -> pads.Dataset:
    raise NotFoundError(f"no table {name!r}")


@pytest.fixture
def tmp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The query's temporary folder is made here, so the test sees it come and go."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_streamed_result_comes_in_batches_and_its_file_is_deleted(tmp_folder: Path) -> None:
    sql = "SELECT range AS n, range * 2 AS m FROM range(100000) ORDER BY n"
    with stream_all(sql, _nothing, batch_rows=10_000) as (batches, refs):
        assert [p.name[:13] for p in tmp_folder.iterdir()] == ["loopml-query-"]
        sizes = []
        total = 0
        for batch in batches:
            sizes.append(batch.num_rows)
            numbers = batch.column("n").to_pylist()
            assert numbers == list(range(total, total + batch.num_rows))
            assert batch.column("m").to_pylist() == [2 * n for n in numbers]
            total += batch.num_rows
    assert refs == []
    assert total == 100_000
    assert len(sizes) >= 10
    assert max(sizes) <= 10_000
    assert list(tmp_folder.iterdir()) == []


def test_a_streamed_query_reads_the_tables_it_names() -> None:
    table = pa.table({"id": list(range(50)), "label": [i % 3 for i in range(50)]})

    def resolve(name: str, version: int | None) -> pads.Dataset:
        if name == "churn":
            return pads.dataset(table)
        raise NotFoundError(f"no table {name!r}")

    sql = "SELECT label, count(*) AS n FROM churn GROUP BY label ORDER BY label"
    with stream_all(sql, resolve) as (batches, refs):
        rows = pa.Table.from_batches(list(batches)).to_pylist()
    assert rows == [{"label": 0, "n": 17}, {"label": 1, "n": 17}, {"label": 2, "n": 16}]
    assert [ref.alias for ref in refs] == ["churn"]
    with pytest.raises(NotFoundError), stream_all("SELECT * FROM nowhere", resolve):
        pass


# Grouping 3,000,000 distinct strings needs far more than 64 MB.
_BIG = "SELECT range % 3000000 AS g, repeat('x', 40) || range AS s FROM range(3000000)"
_GROUPED = f"SELECT count(*) AS n FROM (SELECT s, count(*) FROM ({_BIG}) GROUP BY s)"


def test_over_its_memory_budget_a_streamed_query_spills_only_when_allowed(
    tmp_folder: Path,
) -> None:
    tight = QueryLimits(memory_limit="64MB", threads=1)
    with (
        pytest.raises(ValidationError, match="failed"),
        stream_all(_GROUPED, _nothing, limits=WarehouseLimits(sandbox=tight)),
    ):
        pass
    spilling = QueryLimits(memory_limit="64MB", threads=1, spill_bytes=2 * 1024**3)
    with stream_all(_GROUPED, _nothing, limits=WarehouseLimits(sandbox=spilling)) as (b, _):
        assert pa.Table.from_batches(list(b)).to_pylist() == [{"n": 3_000_000}]
    # The spill folder went with the query's folder.
    assert list(tmp_folder.iterdir()) == []


def test_a_streamed_result_over_its_cap_is_refused_and_leaves_nothing(tmp_folder: Path) -> None:
    sql = "SELECT repeat('x', 1000) AS s FROM range(10000)"
    with (
        pytest.raises(ValidationError, match="over the limit of 100000 bytes"),
        stream_all(sql, _nothing, max_bytes=100_000, batch_rows=100),
    ):
        pass
    assert list(tmp_folder.iterdir()) == []


def test_a_slow_streamed_query_is_stopped_at_its_time_limit() -> None:
    sql = "SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000000) b"
    with (
        pytest.raises(QueryTimeoutError, match="time limit"),
        stream_all(sql, _nothing, timeout_s=0.5),
    ):
        pass


def test_a_streamed_query_is_checked_like_any_other(canary: Path) -> None:
    with pytest.raises(ValidationError), stream_all(f"SELECT * FROM '{canary}'", _nothing):
        pass
    with pytest.raises(ValidationError, match="SELECT"), stream_all("DROP TABLE churn", _nothing):
        pass


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text("token\nnot-to-be-read\n")
    return path
