"""Data files written away from their commit (``parquet_files``): a file holds the sink's
types, its Delta statistics are exact where given, and a value that does not fit the
table's type is refused with the reason."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.core.errors import ValidationError
from loopml.data.parquet_files import FileSink, file_schema, remove


def _rows() -> pa.Table:
    return pa.table(
        {
            "n": pa.array([3, None, -7, 12], pa.int32()),
            "x": [0.5, float("nan"), -2.25, None],
            "name": ["b", "a", None, "c"],
            "long": ["x" * 80, "y", "z", None],
            "scores": [[0.1, 0.9], None, [0.5, 0.5], [1.0, 0.0]],
            "at": pa.array([datetime(2026, 1, 1)] * 4, pa.timestamp("ns")),
            "none": pa.array([None] * 4, pa.float64()),
        }
    )


def test_a_file_holds_the_tables_types_and_exact_statistics(tmp_path: Path) -> None:
    rows = _rows()
    sink = FileSink(str(tmp_path), {}, file_schema(rows.schema))
    written = sink.write(rows)

    assert written.rows == 4
    assert written.size == (tmp_path / written.path).stat().st_size
    back = pq.read_table(tmp_path / written.path)
    assert back.schema.field("at").type == pa.timestamp("us")  # Delta's precision
    assert back.column("n").to_pylist() == [3, None, -7, 12]
    stats = json.loads(written.stats)
    assert stats["numRecords"] == 4
    assert stats["nullCount"] == {"n": 1, "x": 1, "name": 1, "long": 1, "at": 0, "none": 4}
    # Lowest and highest values for numbers (NaN left out) and short text only: a long
    # value, a list, a timestamp and an all-null column say nothing rather than something
    # approximate.
    assert stats["minValues"] == {"n": -7, "x": -2.25, "name": "a"}
    assert stats["maxValues"] == {"n": 12, "x": 0.5, "name": "c"}


def test_a_value_that_does_not_fit_the_tables_type_is_refused_and_remove_cleans_up(
    tmp_path: Path,
) -> None:
    sink = FileSink(str(tmp_path), {}, pa.schema([pa.field("n", pa.int8())]))
    with pytest.raises(ValidationError, match="does not convert to the table's type"):
        sink.write(pa.table({"n": [1, 1000]}))
    assert not list(tmp_path.iterdir())

    kept = sink.write(pa.table({"n": [1, 2]}))
    assert (tmp_path / kept.path).is_file()
    remove(sink, [kept, kept])  # one already gone: best effort, no error
    assert not list(tmp_path.iterdir())
