"""The canonical form of a snapshot's rows, and their content hash.

A dataset version must hash the same whenever it holds the same rows: built twice, in
another process, or from a source whose rows arrive in another order or file layout. So the
rows are first normalized and put in a canonical order, and the hash is taken over that.

Normalization (``normalize``): dictionary columns are decoded; ``string_view`` and
``binary_view`` become ``string`` and ``binary``; ``date64`` becomes ``date32``, ``time32[s]``
becomes ``time32[ms]`` and ``float16`` becomes ``float32`` (what Parquet would turn them into
anyway). Nested, interval and extension columns are refused: a snapshot holds flat columns.

Canonical order (``canonical_order``): rows sorted by every column in turn, ascending, as
Arrow compares them (numbers by value with NaN after every number, text and binary
byte-wise, nulls last); ``-0.0`` sorts as ``0.0``. Rows that tie are identical.

Content hash (``content_hash``), version ``loopml.dataset.v1``: SHA-256 over

1. ``b"loopml.dataset.v1\\0"``, then the row count and column count (8-byte little-endian);
2. for each column in schema order: its name and its type family (UTF-8, each prefixed by
   its byte length as 8-byte little-endian), where ``string``/``large_string`` are both
   ``string`` and ``binary``/``large_binary`` both ``binary``; then one byte per row (1
   valid, 0 null), then the values in canonical row order (nulls as zero):

   - integers, booleans (one byte), dates, times, timestamps and durations: their fixed
     width little-endian integer (the Arrow physical value);
   - floats: IEEE 754 little-endian, with every NaN as the one canonical quiet NaN and
     ``-0.0`` as ``0.0``;
   - decimals: their text (``"-2.25"``) as strings are hashed;
   - strings and binary: each value's byte length (8-byte little-endian), then all the bytes.

So the hash changes when any value, null, column name, column type or the column order
changes, and nothing else changes it. Nullability flags and schema metadata are not hashed.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import ValidationError

HASH_VERSION = b"loopml.dataset.v1\0"

_NORMALIZED: dict[pa.DataType, pa.DataType] = {
    pa.string_view(): pa.string(),
    pa.binary_view(): pa.binary(),
    pa.date64(): pa.date32(),
    pa.time32("s"): pa.time32("ms"),
    pa.float16(): pa.float32(),
}


def _flat(kind: pa.DataType) -> bool:
    t = pa.types
    return bool(
        t.is_null(kind)
        or t.is_boolean(kind)
        or t.is_integer(kind)
        or t.is_floating(kind)
        or t.is_decimal(kind)
        or t.is_string(kind)
        or t.is_large_string(kind)
        or t.is_binary(kind)
        or t.is_large_binary(kind)
        or t.is_fixed_size_binary(kind)
        or t.is_temporal(kind)
    ) and not t.is_interval(kind)


def _normalized_type(name: str, kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    kind = _NORMALIZED.get(kind, kind)
    if not _flat(kind) or isinstance(kind, pa.ExtensionType):
        raise ValidationError(
            f"column {name[:80]!r} has type {kind}: a snapshot holds flat columns (numbers, "
            "text, booleans, binary, dates and times); flatten or cast it in SQL, for "
            f"example CAST({name[:40]} AS VARCHAR)",
            details={"column": name[:255], "type": str(kind)},
        )
    return kind


def normalize(table: pa.Table) -> pa.Table:
    """``table`` with the type normalization above applied, in one chunk per column.

    Raises:
        ValidationError: a column name repeats, or a column is nested (list, struct, map),
            an interval or an extension type.
    """
    seen: set[str] = set()
    columns: list[pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name in seen:
            raise ValidationError(
                f"column name {field.name[:80]!r} repeats: a snapshot needs unique column "
                "names; rename one in SQL with AS",
                details={"column": field.name[:255]},
            )
        seen.add(field.name)
        kind = _normalized_type(field.name, field.type)
        if kind != field.type:
            column = column.cast(kind)
        columns.append(column)
        fields.append(pa.field(field.name, kind, field.nullable))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields)).combine_chunks()


def type_family(kind: pa.DataType) -> str:
    """The type as the hash names it: ``string`` for both string types, ``binary`` for both
    binary types, else Arrow's name (``int64``, ``timestamp[us, tz=UTC]``)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary"
    return str(kind)


def _valid(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)


def canonical_order(table: pa.Table) -> pa.Array:
    """The row indices of ``table`` (normalized) in canonical order."""
    if table.num_rows == 0 or table.num_columns == 0:
        return pa.array(np.arange(table.num_rows), type=pa.int64())
    # Positional names: a column named like a nested field reference must not be parsed.
    keys = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    # Nulls last is Arrow's default; it is not passed because pyarrow 25 deprecated the
    # table-wide option and older versions lack the per-key one. -0.0 and 0.0 compare
    # equal, and NaNs sort together, so rows that tie hash the same (see _values).
    return pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])


def canonicalize(table: pa.Table) -> pa.Table:
    """``table`` normalized and in canonical order: the form a snapshot stores."""
    normalized = normalize(table)
    return normalized.take(canonical_order(normalized)).combine_chunks()


def _length_prefixed(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _values(array: pa.Array) -> list[bytes | memoryview]:
    kind = array.type
    if pa.types.is_null(kind):
        return []
    if pa.types.is_decimal(kind):
        array = pc.cast(array, pa.string())
        kind = array.type
    if pa.types.is_boolean(kind):
        filled = pc.fill_null(array, False).to_numpy(zero_copy_only=False)
        return [np.asarray(filled, dtype=np.uint8).tobytes()]
    if _is_bytes(kind):
        return _binary(pc.cast(array, pa.large_binary()))
    if pa.types.is_floating(kind):
        values = pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False)
        # Adding 0.0 turns -0.0 into 0.0; np.where writes NumPy's one canonical NaN.
        clean = np.where(np.isnan(values), np.nan, values + 0.0).astype(values.dtype)
        return [clean.astype(clean.dtype.newbyteorder("<")).tobytes()]
    if not pa.types.is_integer(kind):
        # Dates, times, timestamps and durations: their physical integer.
        array = array.view(pa.int64() if kind.bit_width == 64 else pa.int32())
    values = pc.fill_null(array, 0).to_numpy(zero_copy_only=False)
    return [values.astype(values.dtype.newbyteorder("<")).tobytes()]


def _is_bytes(kind: pa.DataType) -> bool:
    t = pa.types
    return bool(
        t.is_string(kind)
        or t.is_large_string(kind)
        or t.is_binary(kind)
        or t.is_large_binary(kind)
        or t.is_fixed_size_binary(kind)
    )


def _binary(array: pa.Array) -> list[bytes | memoryview]:
    filled = pc.fill_null(array, b"") if array.null_count else array
    lengths = np.asarray(pc.binary_length(filled).to_numpy(zero_copy_only=False), dtype="<i8")
    offsets_buffer, data_buffer = filled.buffers()[1], filled.buffers()[2]
    assert offsets_buffer is not None, "a binary array has offsets"
    offsets = np.frombuffer(offsets_buffer, dtype="<i8", count=len(filled) + 1 + filled.offset)
    start, end = int(offsets[filled.offset]), int(offsets[filled.offset + len(filled)])
    data = memoryview(b"") if data_buffer is None else memoryview(data_buffer)[start:end]
    return [lengths.tobytes(), data]


class RowsHash:
    """The content hash built a column at a time, in schema order, for rows already in
    canonical order (``content_hash`` with ``ordered=True``, without holding every column at
    once: a snapshot too large for memory is hashed one column at a time from its file).

    Example:
        >>> hashed = RowsHash(rows=table.num_rows, columns=table.num_columns)
        >>> for field, column in zip(table.schema, table.columns):
        ...     hashed.add(field, column)
        >>> hashed.hexdigest() == content_hash(table, ordered=True)
        True
    """

    def __init__(self, *, rows: int, columns: int) -> None:
        self.rows = rows
        self._left = columns
        self._digest = hashlib.sha256(HASH_VERSION)
        self._digest.update(struct.pack("<QQ", rows, columns))

    def add(self, field: pa.Field, column: pa.ChunkedArray | pa.Array) -> None:
        """Hash the next column (normalized, ``rows`` long, in canonical row order)."""
        if len(column) != self.rows or self._left == 0:
            raise ValueError(f"column {field.name!r} does not fit the hash's shape")
        self._left -= 1
        self._digest.update(_length_prefixed(field.name))
        self._digest.update(_length_prefixed(type_family(field.type)))
        if isinstance(column, pa.ChunkedArray):
            array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        else:
            array = column
        self._digest.update(_valid(array).astype(np.uint8).tobytes())
        for part in _values(array):
            self._digest.update(part)

    def hexdigest(self) -> str:
        """The hash, once every column was added."""
        if self._left:
            raise ValueError(f"{self._left} column(s) were not hashed yet")
        return self._digest.hexdigest()


def content_hash(table: pa.Table, *, ordered: bool = False) -> str:
    """The content hash of ``table``'s rows (see the module docstring); the order of its rows
    and chunks does not matter.

    Args:
        ordered: the table is already canonical (``canonicalize``): skip the sort. A table
            that is not gets another hash, so a verifier may pass it for a stored snapshot.

    Raises:
        ValidationError: as ``normalize``.
    """
    normalized = normalize(table)
    ordered_rows = normalized if ordered else normalized.take(canonical_order(normalized))
    hashed = RowsHash(rows=ordered_rows.num_rows, columns=ordered_rows.num_columns)
    for field, column in zip(ordered_rows.schema, ordered_rows.columns, strict=True):
        hashed.add(field, column)
    return hashed.hexdigest()
