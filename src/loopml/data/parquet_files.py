"""A table's data files written away from the process that commits them.

Batch scoring on Ray has each actor write the rows it scored as Parquet files of the output
table (``FileSink.write``), and the server commit every file as one Delta version
(``loopml.data.lake_files``), so no scored row crosses the object store or the server. A
file is in the table only once that commit names it: a writer that dies first leaves a file
no version references (``remove`` deletes them when the server sees the failure; vacuum
deletes what is left).

This module is what such a writer imports (pyarrow and ``deltalake.fs``, a few
milliseconds): nothing of the metadata store, the lake's commit path or their engines.
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.core.errors import ValidationError

ROW_GROUP_ROWS = 256 * 1024
"""Rows per Parquet row group, here and in the lake's own writer (``_delta.WRITER``).
Parquet's writer default is 1 Mi: with 256 Ki, a streamed upload's rows are encoded as they
arrive instead of all at the end (about 0.1 s less after the last byte of a 1M-row file),
and DuckDB scans a file's row groups in parallel."""
DICTIONARY_SAMPLE_ROWS = 65_536
"""Rows of a write's first batch that ``plain_columns`` counts distinct values in."""
_MIN_SAMPLE_ROWS = 1_000
_FILESYSTEMS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
MAX_STAT_CHARS = 64
"""A text column's lowest and highest values go into a file's statistics up to this length
(a longer one is left out: the statistics stay exact, and the log small)."""


def plain_columns(sample: pa.RecordBatch | pa.Table | None) -> list[str]:
    """The columns to write without dictionary encoding: those whose values mostly differ
    in ``sample`` (the write's first rows), more than half of them distinct.

    Parquet's writer dictionary-encodes every column by default, and falls back to plain
    values once a row group's dictionary passes 1 MB; for ids, measurements, free text and
    timestamps it hashes every value for nothing. On the ingest benchmark's 1M rows, turning
    it off for those columns halved the writer's time (0.42 s to 0.22 s), and the files came
    out 6 % smaller, because low-cardinality columns keep their dictionaries. A sample of
    fewer than 1,000 rows says too little: small writes keep the default.
    """
    if sample is None or sample.num_rows < _MIN_SAMPLE_ROWS:
        return []
    rows = sample.slice(0, DICTIONARY_SAMPLE_ROWS)
    plain: list[str] = []
    for column_field, column in zip(rows.schema, rows.columns, strict=True):
        try:
            distinct = pc.count_distinct(column, mode="all").as_py()
        except pa.ArrowException:  # a type it cannot count (nested ones): the default
            continue
        if distinct * 2 > rows.num_rows:
            plain.append(column_field.name)
    return plain


def file_schema(schema: pa.Schema) -> pa.Schema:
    """The types a table's files hold for ``schema`` (the lake's own writer's): Delta's
    types as Arrow reads them back, timestamps in microseconds (Delta's precision)."""
    from deltalake import Schema

    delta = pa.schema(Schema.from_arrow(schema).to_arrow())
    return pa.schema(
        [
            pa.field(f.name, pa.timestamp("us", f.type.tz), f.nullable)
            if pa.types.is_timestamp(f.type)
            else f
            for f in delta
        ]
    )


@dataclass(frozen=True)
class DataFile:
    """A written file, as its commit adds it: ``path`` is relative to the table's location,
    ``stats`` Delta's statistics (JSON: rows, null counts, lowest and highest values)."""

    path: str
    size: int
    rows: int
    stats: str


@dataclass(frozen=True)
class FileSink:
    """Where a writer puts a table's files: the table's location (a URI with the artifact
    store's options) and the schema each file holds (``file_schema``)."""

    uri: str
    storage_options: Mapping[str, str]
    schema: pa.Schema

    def filesystem(self) -> Any:
        """The table's location as a pyarrow filesystem (Delta Lake's object store, with the
        same options as its commits), opened once per process."""
        key = (self.uri, tuple(sorted(self.storage_options.items())))
        if key not in _FILESYSTEMS:
            import pyarrow.fs as pafs
            from deltalake.fs import DeltaStorageHandler

            handler = DeltaStorageHandler(self.uri, dict(self.storage_options))
            _FILESYSTEMS[key] = pafs.PyFileSystem(handler)
        return _FILESYSTEMS[key]

    def write(self, rows: pa.Table) -> DataFile:
        """``rows`` as one new data file, cast to the sink's schema.

        Raises:
            ValidationError: a value that does not convert to the table's type without loss
                (an int64 too large for float64).
        """
        try:
            rows = rows.select(self.schema.names).cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValidationError(
                f"a value does not convert to the table's type without loss: {exc}",
                details={"reason": str(exc)[:500]},
            ) from None
        plain = set(plain_columns(rows))
        path = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        filesystem = self.filesystem()
        with filesystem.open_output_stream(path) as out:
            writer = pq.ParquetWriter(
                out,
                self.schema,
                compression="snappy",
                use_dictionary=[n for n in self.schema.names if n not in plain],
            )
            try:
                writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
            finally:
                writer.close()
        metadata = writer.writer.metadata
        size = filesystem.get_file_info(path).size
        return DataFile(path, int(size), rows.num_rows, stats_json(metadata, self.schema))


def remove(sink: FileSink, files: Iterable[DataFile]) -> None:
    """Delete files that no commit will name (best effort: vacuum deletes what is left)."""
    filesystem = sink.filesystem()
    for written in files:
        with contextlib.suppress(OSError):
            filesystem.delete_file(written.path)


def stats_json(metadata: pq.FileMetaData, schema: pa.Schema) -> str:
    """Delta's statistics of a file: its rows, and for each top-level column of a plain
    type its null count, with lowest and highest values for numbers and short text (the
    types whose Parquet statistics read back exactly as Delta writes them)."""
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    leaf = 0
    for column in schema:
        leaves = _leaves(column.type)
        if leaves == 1 and not pa.types.is_nested(column.type):
            _column_stats(metadata, leaf, column, nulls, lows, highs)
        leaf += leaves
    stats: dict[str, Any] = {"numRecords": metadata.num_rows, "nullCount": nulls}
    if lows:
        stats["minValues"], stats["maxValues"] = lows, highs
    return json.dumps(stats, allow_nan=False)


def _column_stats(
    metadata: pq.FileMetaData,
    leaf: int,
    column: pa.Field,
    nulls: dict[str, int],
    lows: dict[str, Any],
    highs: dict[str, Any],
) -> None:
    total = 0
    low: Any = None
    high: Any = None
    exact = _ranged(column.type)
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(leaf).statistics
        if chunk is None or not chunk.has_null_count:
            return  # no statistics: say nothing of the column
        total += chunk.null_count
        if not exact or not chunk.has_min_max:
            exact = exact and chunk.null_count == metadata.row_group(group).num_rows
            continue
        low = chunk.min if low is None else min(low, chunk.min)
        high = chunk.max if high is None else max(high, chunk.max)
    nulls[column.name] = total
    if exact and low is not None and _storable(low) and _storable(high):
        lows[column.name], highs[column.name] = low, high


def _ranged(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind))


def _storable(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_STAT_CHARS
    return isinstance(value, int) and not isinstance(value, bool)


def _leaves(kind: pa.DataType) -> int:
    """How many Parquet leaf columns a column of this type takes."""
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1
