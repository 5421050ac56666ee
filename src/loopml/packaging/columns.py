"""JSON values to typed column arrays, checked against the signature with precise messages.

The work is per column, not per row: a column's values are typed by one ``set(map(type,
...))`` pass and converted by one ``np.array`` call, both running in C. Python loops over
rows only run to name the first offending row once a column is known to be wrong.

A column becomes:

- ``float`` / ``integer``: float64, NaN where the value is missing (``null``). An integer
  column refuses fractions (``1.5``); it stays float64 because the model gets float32
  (ONNX) or the package's own cast (skops) anyway.
- ``boolean``: bool. ``true``/``false`` or ``0``/``1`` (``1.0`` too); no missing values, as
  the packaging scheme has no way to feed one.
- ``string``: object array of ``str``, ``None`` where missing.
- ``datetime``: ``datetime64[us]`` in UTC, NaT where missing, from an ISO-8601 string (a
  date, or a date and time with or without an offset; without one it is UTC); the runtime
  derives the model's calendar columns from it (``loopml.packaging.dates``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from loopml.core.errors import ValidationError
from loopml.packaging import ColumnSpec, Signature, dates

_NONE = type(None)
_NUMERIC = frozenset({"float", "integer"})
_NUMBERS = frozenset({int, float, _NONE})
_ALLOWED: dict[str, frozenset[type]] = {
    "float": frozenset({int, float, _NONE}),
    "integer": frozenset({int, float, _NONE}),
    "boolean": frozenset({bool, int, float}),
    "string": frozenset({str, _NONE}),
}
_EXPECTED = {
    "float": "a number (or null when missing)",
    "integer": "an integer (or null when missing)",
    "boolean": "true or false (or 0/1)",
    "string": "a string (or null when missing)",
    "datetime": 'an ISO-8601 date or time such as "2024-05-31" or "2024-05-31T14:30:00+02:00" '
    "(or null when missing)",
}
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    tuple: "an array",
    str: "a string",
    bool: "a boolean",
    _NONE: "null",
    int: "a number",
    float: "a number",
}
_SHOWN = 20


def json_type(value: object) -> str:
    """How a decoded JSON value reads in a message: ``a string``, ``null``, ``an object``."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)[:40]
    return json_type(value)


def _names(names: Sequence[str]) -> list[str]:
    shown = [n[:64] for n in names[:_SHOWN]]
    return [*shown, f"... {len(names) - _SHOWN} more"] if len(names) > _SHOWN else shown


def _bad_value(spec: ColumnSpec, row: int, value: object, why: str = "") -> ValidationError:
    expected = _EXPECTED[spec.type]
    reason = why or f"expected {expected}"
    return ValidationError(
        f"column {spec.name!r} ({spec.type}): row {row} has {_show(value)}; {reason}",
        details={
            "column": spec.name,
            "row": row,
            "expected": spec.type,
            "got": json_type(value),
        },
    )


def _first(values: Sequence[Any], bad: frozenset[type]) -> int:
    return next(i for i, v in enumerate(values) if type(v) in bad)


def to_array(spec: ColumnSpec, values: Sequence[Any]) -> np.ndarray:
    """One column's JSON values as a typed array (see the module docstring).

    Raises:
        ValidationError: a value of the wrong JSON type, a fraction in an integer column, a
            boolean that is not true/false/0/1 or is missing, a datetime that is not an
            ISO-8601 date or time; the message names the column and the first offending row.
    """
    if spec.type == "datetime":
        try:
            return dates.parse(values)
        except dates.BadDate as exc:
            raise _bad_value(spec, exc.row, values[exc.row]) from None
    allowed = _ALLOWED[spec.type]
    found = set(map(type, values))
    if not found <= allowed:
        row = _first(values, frozenset(found - allowed))
        why = "booleans cannot be missing" if values[row] is None and spec.type == "boolean" else ""
        raise _bad_value(spec, row, values[row], why)
    if spec.type == "string":
        return np.array(values, dtype=object)
    if spec.type == "boolean":
        return _booleans(spec, values, found)
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        row = next(i for i, v in enumerate(values) if isinstance(v, int) and abs(v) > 1e308)
        raise _bad_value(spec, row, values[row], "the number is too large") from None
    if spec.type == "integer" and float in found:
        fractional = np.flatnonzero(np.isfinite(array) & (array != np.floor(array)))
        if fractional.size:
            row = int(fractional[0])
            raise _bad_value(spec, row, values[row], "integers have no fraction")
    return array


def _booleans(spec: ColumnSpec, values: Sequence[Any], found: set[type]) -> np.ndarray:
    if found == {bool}:
        return np.array(values, dtype=bool)
    try:
        numbers = np.array(values, dtype=np.float64)
    except OverflowError:
        numbers = np.array([v if -2 < v < 2 else 2 for v in values], dtype=np.float64)
    wrong = np.flatnonzero((numbers != 0) & (numbers != 1))
    if wrong.size:
        row = int(wrong[0])
        raise _bad_value(spec, row, values[row], "only true/false or 0/1 are booleans")
    return numbers.astype(bool)


def check_rows(rows: int, max_rows: int | None, what: str = "instances") -> None:
    """Refuse an empty request, or one with more than ``max_rows`` rows."""
    if rows == 0:
        raise ValidationError(
            f"the request holds no {what}: send at least one row",
            details={"rows": 0},
        )
    if max_rows is not None and rows > max_rows:
        raise ValidationError(
            f"the request holds {rows} {what}, more than the limit of {max_rows} per request: "
            "split it into several requests",
            details={"rows": rows, "limit": max_rows},
        )


def from_instances(
    signature: Signature, instances: object, max_rows: int | None, ignore_extra: bool = False
) -> dict[str, np.ndarray]:
    """Typed columns from ``/predict`` instances: objects ``{"col": value}`` or arrays of
    values in signature order (all instances of one kind).

    Raises:
        ValidationError: not a non-empty array, too many rows, mixed or non-record
            instances, unknown or missing columns, wrong lengths or value types.
    """
    if type(instances) is not list:
        raise ValidationError(
            f'"instances" must be an array of records, got {json_type(instances)}: send '
            '{"instances": [{"column": value, ...}, ...]}',
            details={"field": "instances"},
        )
    check_rows(len(instances), max_rows)
    kinds = set(map(type, instances))
    if kinds == {dict}:
        columns = _from_records(signature, instances, ignore_extra)
    elif kinds == {list}:
        columns = _from_lists(signature, instances)
    else:
        first = type(instances[0]) if type(instances[0]) in (dict, list) else dict
        row = next(i for i, v in enumerate(instances) if type(v) is not first)
        raise ValidationError(
            f"instance {row} is {json_type(instances[row])}; every instance must be an "
            'object {"column": value, ...} (or every one an array of values in the order of '
            "the model's columns)",
            details={"row": row, "got": json_type(instances[row])},
        )
    numeric = _numeric_columns(signature, columns)
    if numeric is not None:
        return numeric
    return {
        spec.name: to_array(spec, col) for spec, col in zip(signature.inputs, columns, strict=True)
    }


def _numeric_columns(
    signature: Signature, columns: list[Sequence[Any]]
) -> dict[str, np.ndarray] | None:
    """The common case in one ``np.array`` call: every column a number and every value a
    number or null. ``None`` otherwise, and for anything ``to_array`` would refuse: the
    per-column path then finds the offending value and names it, so the checks are the same.
    """
    plan = _plan(signature)
    if plan is None:
        return None
    names, integers, _, _ = plan
    matrix = _float_matrix(columns, integers)
    return None if matrix is None else dict(zip(names, matrix, strict=True))


def _float_matrix(
    lines: Sequence[Any],
    integers: list[int],
    *,
    records: bool = False,
    width: int = 0,
    column_major: bool = False,
) -> np.ndarray | None:
    """``lines`` (columns; with ``records``, rows; with ``width``, one flat row-major run
    of rows of ``width`` values, or with ``column_major`` too, ``width`` columns' values one
    column after another) as a ``[columns, rows]`` float64 matrix, NaN where null;
    ``None`` where a value is not a number or null, does not fit a float, or is not whole
    in an integer column (the per-column path then names it)."""
    given = lines if width else chain.from_iterable(lines)
    if not set(map(type, given)) <= _NUMBERS:
        return None
    try:
        matrix = np.array(lines, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    if width:
        matrix = matrix.reshape(width, -1) if column_major else matrix.reshape(-1, width).T
    elif records:
        matrix = matrix.T
    if integers:
        values = matrix[integers]
        if (np.isfinite(values) & (values != np.floor(values))).any():
            return None
    return matrix


# The names, the integer columns' positions, the names as a set, and a getter of a
# record's values in signature order.
_Plan = tuple[tuple[str, ...], list[int], frozenset[str], Any]
_PLANS: dict[int, tuple[Signature, _Plan | None]] = {}


def _plan(signature: Signature) -> _Plan | None:
    """For an all-number signature of two columns or more: the names and the integer
    columns' positions (kept per signature: a server has one)."""
    cached = _PLANS.get(id(signature))
    if cached is not None and cached[0] is signature:
        return cached[1]
    specs = signature.inputs
    plan: _Plan | None = None
    if len(specs) >= 2 and all(spec.type in _NUMERIC for spec in specs):
        integers = [i for i, spec in enumerate(specs) if spec.type == "integer"]
        names = tuple(spec.name for spec in specs)
        plan = (names, integers, frozenset(names), itemgetter(*names))
    if len(_PLANS) > 64:  # signatures of models no longer loaded (tests load many)
        _PLANS.clear()
    _PLANS[id(signature)] = (signature, plan)
    return plan


def all_numbers(signature: Signature) -> bool:
    """Whether ``signature`` takes two columns or more, all numbers: the matrix paths'."""
    return _plan(signature) is not None


def tensor_matrix(signature: Signature, data: Sequence[Any], *, by_row: bool) -> np.ndarray | None:
    """V2 input tensors of an all-number signature in one ``np.array`` call: ``data`` is
    one ``[N, C]`` tensor's flat, row-major values (``by_row``) or the column tensors' values
    one column after another, in signature order. Returns the ``[columns, rows]`` float64 matrix
    ``numeric_matrix`` gives ``/predict``; ``None`` where that path does not apply, and the
    per-column path then checks (and names) every value, so the rules are the same.
    """
    plan = _plan(signature)
    if plan is None:
        return None
    names, integers, _, _ = plan
    matrix = _float_matrix(data, integers, width=len(names), column_major=not by_row)
    return None if matrix is None else np.ascontiguousarray(matrix)


def numeric_matrix(
    signature: Signature, instances: object, max_rows: int | None, ignore_extra: bool = False
) -> np.ndarray | None:
    """The common ``/predict`` request in a few C calls: an all-number signature, records
    that each hold exactly its columns, every value a number or null. Returns a
    ``[columns, rows]`` float64 matrix (NaN where null), in signature order; ``None`` for
    anything else, which ``from_instances`` then checks value by value (and refuses with
    its precise message where it must), so the rules are the same either way.
    """
    plan = _plan(signature)
    if plan is None or type(instances) is not list or not instances:
        return None
    if max_rows is not None and len(instances) > max_rows:
        return None
    _, integers, wanted, getter = plan
    for record in instances:
        if type(record) is not dict:
            return None
        keys = record.keys()
        if keys != wanted and not (ignore_extra and keys >= wanted):
            return None
    matrix = _float_matrix(list(map(getter, instances)), integers, records=True)
    return None if matrix is None else np.ascontiguousarray(matrix)


def _from_records(
    signature: Signature, records: list[dict[str, Any]], ignore_extra: bool = False
) -> list[Sequence[Any]]:
    names = [c.name for c in signature.inputs]
    present: set[str] = set().union(*records)
    unknown = sorted(present.difference(names))
    if unknown and not ignore_extra:
        raise ValidationError(
            f"unknown column(s) {_names(unknown)}: the model takes {_names(names)} (send "
            '"extra": "ignore" beside "instances" to drop columns it does not take)',
            details={"unknown": unknown[:100], "expected": names},
        )
    try:
        rows = list(map(itemgetter(*names), records))
    except KeyError:
        raise _missing(names, present, records) from None
    if len(names) == 1:
        return [rows]
    return list(zip(*rows, strict=True))


def _missing(names: list[str], present: set[str], records: list[dict[str, Any]]) -> ValidationError:
    absent = [n for n in names if n not in present]
    if absent:
        return ValidationError(
            f"missing column(s) {_names(absent)}: the model takes {_names(names)}",
            details={"missing": absent, "expected": names},
        )
    row, lacking = next(
        (i, [n for n in names if n not in r]) for i, r in enumerate(records) if len(r) < len(names)
    )
    return ValidationError(
        f"instance {row} lacks column(s) {_names(lacking)}: every instance needs all of the "
        "model's columns; send null for a missing value",
        details={"missing": lacking, "row": row, "expected": names},
    )


def _from_lists(signature: Signature, rows: list[list[Any]]) -> list[Sequence[Any]]:
    width = len(signature.inputs)
    if set(map(len, rows)) != {width}:
        row = next(i for i, r in enumerate(rows) if len(r) != width)
        names = [c.name for c in signature.inputs]
        raise ValidationError(
            f"instance {row} has {len(rows[row])} values; the model takes {width} columns, in "
            f"this order: {_names(names)}",
            details={"row": row, "got": len(rows[row]), "expected": names},
        )
    return list(zip(*rows, strict=True))
