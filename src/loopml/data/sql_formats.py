"""A warehouse result as JSON-safe rows, CSV text or an Arrow IPC stream.

JSON values: numbers stay numbers (``NaN`` and infinities become ``null``), decimals become
strings (exact, where a float would round), dates and times ISO 8601 text, durations a
number of seconds, binary values base64 text, UUIDs text, lists and structs JSON arrays and
objects.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

CSV_MEDIA_TYPE = "text/csv"
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"


def json_value(value: Any) -> Any:
    """One value as JSON can carry it (see the module's rules)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # A map column arrives as a list of (key, value) pairs.
        return [json_value(v) for v in value]
    for kind, convert in _SCALARS:
        if isinstance(value, kind):
            return convert(value)
    return str(value)


_SCALARS: tuple[tuple[Any, Any], ...] = (
    (float, lambda v: v if math.isfinite(v) else None),
    (Decimal, lambda v: str(v) if v.is_finite() else None),
    (dt.datetime | dt.date | dt.time, lambda v: v.isoformat()),
    (dt.timedelta, lambda v: v.total_seconds()),
    (bytes, lambda v: base64.b64encode(v).decode("ascii")),
    (
        pa.MonthDayNano,
        lambda v: {"months": v.months, "days": v.days, "nanoseconds": v.nanoseconds},
    ),
    (uuid.UUID, str),
)


def json_rows(table: pa.Table) -> list[list[Any]]:
    """The table's rows, each a list of JSON-safe values in column order."""
    columns = [[json_value(v) for v in column.to_pylist()] for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def csv_bytes(table: pa.Table) -> bytes:
    """The table as CSV with a header row; nested columns are written as JSON text."""
    out = io.BytesIO()
    pacsv.write_csv(_flat(table), out)
    return out.getvalue()


def arrow_bytes(table: pa.Table) -> bytes:
    """The table as an Arrow IPC stream (read with ``pyarrow.ipc.open_stream``)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _flat(table: pa.Table) -> pa.Table:
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_nested(kind) or pa.types.is_interval(kind) or _no_text_cast(column):
            texts = [None if v is None else json.dumps(json_value(v)) for v in column.to_pylist()]
            column = pa.chunked_array([pa.array(texts, pa.string())], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _no_text_cast(column: pa.ChunkedArray) -> bool:
    try:
        column.slice(0, 1).cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return True
    return False
