"""Schema enforcement for lake tables: which incoming types a table accepts, and how.

A table's schema is inferred at its first write and enforced afterwards. An incoming column
of the table's type passes; a lossless widening (a narrower integer into a wider one, an
integer or a float32 into float64, a column of nulls into anything, another text or
timestamp encoding of the same kind) is cast with ``pyarrow.compute.cast(safe=True)``;
anything else is refused with a ``ValidationError`` naming the columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.lake import ColumnInfo, check_declared

MAX_SHOWN_ROWS = 5
_INT_BITS = {pa.int8(): 8, pa.int16(): 16, pa.int32(): 32, pa.int64(): 64}
_UINT_BITS = {pa.uint8(): 8, pa.uint16(): 16, pa.uint32(): 32, pa.uint64(): 64}


def columns_of(schema: pa.Schema) -> list[ColumnInfo]:
    """The ``ColumnInfo`` list of an Arrow schema."""
    return [ColumnInfo(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema]


def schema_from(columns: list[ColumnInfo]) -> pa.Schema:
    """The Arrow schema of declared columns, as Delta Lake will store it.

    Raises:
        ValidationError: a type the lake does not store as declared, or two columns with
            the same name (``core.lake.check_declared``).
    """
    checked = check_declared(list(columns))
    return pa.schema([pa.field(c.name, pa.type_for_alias(c.type), c.nullable) for c in checked])


def _same_kind(found: pa.DataType, expected: pa.DataType) -> bool:
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    blob = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    for family in (text, blob):
        if any(f(found) for f in family) and any(f(expected) for f in family):
            return True
    if pa.types.is_timestamp(found) and pa.types.is_timestamp(expected):
        return (found.tz is None) == (expected.tz is None)
    return False


def is_safe_cast(found: pa.DataType, expected: pa.DataType) -> bool:
    """Whether ``found`` converts to ``expected`` without losing information (see module)."""
    if found == expected or pa.types.is_null(found) or _same_kind(found, expected):
        return True
    if expected in _INT_BITS:
        if found in _INT_BITS:
            return _INT_BITS[found] <= _INT_BITS[expected]
        return found in _UINT_BITS and _UINT_BITS[found] < _INT_BITS[expected]
    if pa.types.is_float64(expected):
        return found in _INT_BITS or found in _UINT_BITS or pa.types.is_floating(found)
    return False


def _offending_rows(
    column: pa.ChunkedArray | pa.Array, expected: pa.DataType | None = None
) -> list[dict[str, Any]]:
    """The first rows whose value does not convert to ``expected`` (every non-null row when
    that cannot be told: a type with no cast at all)."""
    values = column.slice(0, 10_000)
    mask = _unconvertible(values, expected) if expected is not None else None
    if mask is None:
        mask = pc.is_valid(values)
    indices = pc.indices_nonzero(mask).slice(0, MAX_SHOWN_ROWS).to_pylist()
    shown = values.take(pa.array(indices, pa.int64())).to_pylist() if indices else []
    return [{"row": i, "value": _short(v)} for i, v in zip(indices, shown, strict=True)]


MAX_DISTINCT_TRIED = 5_000


def _unconvertible(values: pa.ChunkedArray | pa.Array, expected: pa.DataType) -> pa.Array | None:
    """A mask of the values that do not cast to ``expected``, tried one distinct value at a
    time (Arrow stops a cast at its first failure without saying where); ``None`` when every
    value fails alike or there are too many distinct values to try."""
    distinct = pc.unique(values.drop_null() if hasattr(values, "drop_null") else values)
    if len(distinct) > MAX_DISTINCT_TRIED:
        return None
    bad = []
    for value in distinct:
        try:
            pa.array([value.as_py()], distinct.type).cast(expected, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad.append(value.as_py())
    if not bad or len(bad) == len(distinct):
        return None
    return pc.fill_null(pc.is_in(values, value_set=pa.array(bad, distinct.type)), False)


NUMBER_LIKE_SHARE = 0.8
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def number_like_strings(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Text columns of a new table's first batch whose values are numbers but for a few:
    each with the rows that are not (a typo such as ``forty`` made the whole column text).

    A column counts when at least ``NUMBER_LIKE_SHARE`` of its non-null values read as
    numbers and some do not.
    """
    found = []
    for field in batch.schema:
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = batch.column(field.name)
        numeric = pc.fill_null(pc.match_substring_regex(column, _NUMBER), True)
        bad_count = len(column) - (pc.sum(numeric).as_py() or 0)
        valid = len(column) - column.null_count
        if bad_count and valid and (valid - bad_count) / valid >= NUMBER_LIKE_SHARE:
            indices = pc.indices_nonzero(pc.invert(numeric)).slice(0, MAX_SHOWN_ROWS)
            shown = column.take(indices).to_pylist()
            rows = [
                {"row": i, "value": _short(v)}
                for i, v in zip(indices.to_pylist(), shown, strict=True)
            ]
            found.append({"column": field.name, "rows": rows, "numbers": valid - bad_count})
    return found


FIRST_LINE = b"loopml.first_line"
"""Schema metadata a file's reader carries: the file's line of its row 0 (a CSV's 2, under
its header; a JSON Lines file's 1), so a message names the line a person opens the file
at, not a 0-based row."""


def with_first_line(reader: pa.RecordBatchReader, line: int) -> pa.RecordBatchReader:
    """``reader``, its schema saying which line of the file its row 0 is."""
    metadata = {**(reader.schema.metadata or {}), FIRST_LINE: str(line).encode()}
    return pa.RecordBatchReader.from_batches(reader.schema.with_metadata(metadata), reader)


def first_line(schema: pa.Schema) -> int | None:
    """The file's line of row 0 (see ``FIRST_LINE``), ``None`` when not read from lines."""
    raw = (schema.metadata or {}).get(FIRST_LINE)
    return int(raw) if raw is not None and raw.isdigit() else None


def where_rows(rows: list[dict[str, Any]], first: int | None) -> str:
    """``line 3 ('x')`` (``lines ...``) of a file read by lines, else ``row 2 ('x')``
    counted from 1; ``rows`` hold 0-based ``row`` indices."""
    word = "line" if first is not None else "row"
    cells = ", ".join(f"{r['row'] + (first or 1)} ({r['value']!r})" for r in rows)
    return f"{word}{'s' if len(rows) > 1 else ''} {cells}"


def describe_number_like(problem: dict[str, Any], first: int | None = None) -> str:
    """One sentence for a ``number_like_strings`` finding; ``first`` as in ``where_rows``."""
    rows = problem["rows"]
    verb = "are not numbers" if len(rows) > 1 else "is not a number"
    return (
        f"column {problem['column']!r} is stored as text: {where_rows(rows, first)} {verb}, "
        f"while {problem['numbers']} other values are"
    )


def _short(value: Any) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)[:100]


def check_names(schema: pa.Schema) -> None:
    """Refuse column names Delta cannot hold: empty, over 255 characters, not valid UTF-8
    (a binary file read as CSV), holding NUL (the writer cuts the name there), or repeated
    (Delta compares names without case: ``id`` and ``ID`` are the same column)."""
    seen: set[str] = set()
    try:
        names = schema.names
    except UnicodeDecodeError as exc:
        raise unreadable(exc) from exc
    for name in names:
        try:
            valid = 0 < len(name) <= 255 and bool(name.encode("utf-8")) and "\x00" not in name
        except UnicodeEncodeError:
            valid = False
        if not valid or name.lower() in seen:
            shown = name[:40].encode("utf-8", "replace").decode("utf-8", "replace")
            raise ValidationError(
                f"invalid or repeated column name {shown!r}: expected unique UTF-8 names of 1 "
                "to 255 characters; check that the file is CSV, Parquet or JSON Lines",
                details={"column": shown},
            )
        seen.add(name.lower())


OVERWRITE_HINT = (
    "Convert those columns, or replace the table by writing in overwrite mode "
    "(`loopml ingest --mode overwrite`; API: mode=overwrite)"
)


def plan_cast(
    expected: pa.Schema,
    found: pa.Schema,
    sample: pa.RecordBatch | None,
    hint: str = OVERWRITE_HINT,
) -> pa.Schema:
    """The schema to cast incoming data to, or a ``ValidationError`` naming every problem.

    Args:
        expected: the table's schema.
        found: the incoming data's schema.
        sample: the first incoming batch, to show the first offending rows.
        hint: the message's last sentence: how to fix it.

    Raises:
        ValidationError: a column is missing, extra, or of a type that does not convert
            safely; ``details.columns`` lists each with expected and found types and rows.
    """
    problems: list[dict[str, Any]] = []
    found_names = set(found.names)
    for field in expected:
        if field.name not in found_names:
            problems.append({"column": field.name, "expected": str(field.type), "found": None})
            continue
        got = found.field(field.name).type
        if not is_safe_cast(got, field.type):
            problem: dict[str, Any] = {
                "column": field.name,
                "expected": str(field.type),
                "found": str(got),
            }
            if sample is not None:
                problem["rows"] = _offending_rows(sample.column(field.name), field.type)
            problems.append(problem)
    for name in found.names:
        if name not in expected.names:
            problems.append(
                {"column": name, "expected": None, "found": str(found.field(name).type)}
            )
    if problems:
        described = _describe(problems, hint, first_line(found))
        raise ValidationError(described, details={"columns": problems})
    return expected


def _describe(problems: list[dict[str, Any]], hint: str, first: int | None) -> str:
    parts = []
    for p in problems:
        if p["found"] is None:
            parts.append(f"{p['column']!r} is missing (expected {p['expected']})")
        elif p["expected"] is None:
            parts.append(f"{p['column']!r} is not in the table (found {p['found']})")
        else:
            rows = p.get("rows", [])
            at = f" at {where_rows(rows, first)}" if rows else ""
            parts.append(f"{p['column']!r} expected {p['expected']}, found {p['found']}{at}")
    return "the data does not match the table's schema: " + "; ".join(parts) + f". {hint}"


def cast_batches(
    batches: Iterator[pa.RecordBatch], target: pa.Schema, failures: list[LoopmlError]
) -> Iterator[pa.RecordBatch]:
    """``batches`` cast to ``target``, column order included.

    A value that does not survive the cast (an int64 too large for float64) stops the stream;
    its ``ValidationError`` is put in ``failures`` so the caller can raise it once the native
    writer has given up (an exception crossing the writer loses its class). So is a loopml
    error raised by the source (a streamed upload over its size limit: 413).
    """
    source = iter(batches)
    while True:
        try:
            batch = next(source)
        except StopIteration:
            return
        except LoopmlError as exc:
            failures.append(exc)
            raise
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            failures.append(_cause(exc) or unreadable(exc))
            raise
        try:
            yield _cast(batch, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            failures.append(
                ValidationError(
                    f"a value does not convert to the table's type without loss: {exc}",
                    details={"reason": str(exc)[:500]},
                )
            )
            raise


def _cause(exc: BaseException) -> LoopmlError | None:
    # Arrow reports an error raised by a Python file it reads as its own, with the original
    # as the cause or context.
    seen = exc.__cause__ or exc.__context__
    return seen if isinstance(seen, LoopmlError) else None


def unreadable(exc: Exception) -> ValidationError:
    """The 422 for data that does not parse (a CSV block whose values change type)."""
    return ValidationError(
        f"the data could not be read: {str(exc)[:300]}; check the file's format and content",
        details={"reason": str(exc)[:500]},
    )


def _cast(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for field in target:
        column = batch.column(field.name)
        if column.type != field.type:
            column = pc.cast(column, field.type, safe=True)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=target)
