"""Columns read with the types the writer declared, not the ones Arrow would infer.

Inference reads a column of numbers with one typo (``forty``) as text, and a column of zip
codes as integers (losing their leading zeros). A declared column is read as given instead:
CSV reads it as text first (so ``02134`` stays whole), and every format then casts it to the
declared type with ``safe=True``. A value that does not convert refuses the file with the
column, the type and the first offending rows, counted from 0 across the whole file, as the
other schema errors count them (``loopml.data.schema``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import ValidationError
from loopml.core.lake import ColumnInfo
from loopml.data.schema import MAX_SHOWN_ROWS, first_line, schema_from, where_rows


def declared_types(columns: Sequence[ColumnInfo]) -> dict[str, pa.DataType]:
    """The Arrow type of each declared column, as the lake stores it.

    Raises:
        ValidationError: an unknown type, or a column declared twice.
    """
    schema = schema_from(list(columns))
    return {field.name: field.type for field in schema}


def apply(
    reader: pa.RecordBatchReader,
    types: Mapping[str, pa.DataType],
    null_values: Collection[str] = (),
) -> pa.RecordBatchReader:
    """``reader`` with the columns of ``types`` cast to them as the batches pass.

    Args:
        types: the declared columns and their types.
        null_values: text read as null before a text column is cast to another type (CSV's
            empty and ``NA`` cells, which inference would have read as null).

    Raises:
        ValidationError: a declared column the data does not have, or a value that does not
            convert (at once for the first batch, as they are read for the others).
    """
    names = reader.schema.names
    missing = [name for name in types if name not in names]
    if missing:
        raise ValidationError(
            f"the schema declares {', '.join(map(repr, missing))}, which the file does not "
            f"have; its columns are {', '.join(map(repr, names[:50]))}",
            details={"missing": missing, "columns": names[:1000]},
        )
    target = pa.schema(
        [pa.field(f.name, types.get(f.name, f.type), f.nullable) for f in reader.schema],
        metadata=reader.schema.metadata,
    )
    nulls = pa.array(sorted(null_values), pa.string())
    line = first_line(reader.schema)

    def cast(batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
        arrays = [
            _cast(batch.column(i), field, offset, nulls, line) if field.name in types else batch[i]
            for i, field in enumerate(target)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=target)

    source = iter(reader)
    # The first batch (a small file's every row) is cast now: a refusal comes before the
    # writer creates anything.
    first = next(source, None)
    head = [] if first is None else [cast(first, 0)]

    def batches() -> Iterator[pa.RecordBatch]:
        yield from head
        offset = 0 if first is None else first.num_rows
        for batch in source:
            yield cast(batch, offset)
            offset += batch.num_rows

    return pa.RecordBatchReader.from_batches(target, batches())


_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def _cast(
    column: pa.Array, field: pa.Field, offset: int, nulls: pa.Array, line: int | None
) -> pa.Array:
    if column.type == field.type:
        return column
    if len(nulls) and pa.types.is_string(column.type):
        column = pc.if_else(pc.is_in(column, value_set=nulls), None, column)
    try:
        return pc.cast(column, field.type, safe=True)
    except _CAST_ERRORS:
        rows = [
            {"row": offset + i, "value": _short(column[i].as_py())}
            for i in _bad_rows(column, field.type)
        ]
        verb = "do not convert" if len(rows) > 1 else "does not convert"
        raise ValidationError(
            f"column {field.name!r} is declared {field.type}, but {where_rows(rows, line)} "
            f"{verb} to it (read as {column.type}): fix those rows, or declare another type",
            details={
                "columns": [
                    {
                        "column": field.name,
                        "expected": str(field.type),
                        "found": str(column.type),
                        "rows": rows,
                    }
                ]
            },
        ) from None


def _bad_rows(column: pa.Array, kind: pa.DataType) -> list[int]:
    """The first rows of ``column`` whose value does not cast to ``kind``, found by halving
    the slices that fail (a cast stops at its first failure without saying where): exact for
    any type, and about two passes over the column per row found."""
    found: list[int] = []

    def search(start: int, length: int) -> None:
        if len(found) >= MAX_SHOWN_ROWS or length == 0:
            return
        part = column.slice(start, length)
        try:
            pc.cast(part, kind, safe=True)
            return
        except _CAST_ERRORS:
            pass
        if length == 1:
            if part.null_count == 0:
                found.append(start)
            return
        half = length // 2
        search(start, half)
        search(start + half, length - half)

    search(0, len(column))
    return found


def _short(value: object) -> object:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)[:100]
