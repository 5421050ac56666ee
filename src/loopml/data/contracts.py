"""Checking a batch against its table's contract, vectorised with ``pyarrow.compute``.

Each row rule gives a boolean "bad" array over the batch; a rule of the whole batch (row
count, freshness, a missing or mistyped column) marks every row bad, so under ``quarantine``
such a batch goes to ``<table>__rejected`` whole. Regexes run on RE2
(``match_substring_regex``), linear in the input, so a user's pattern cannot hang the server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.clock import utcnow
from loopml.core.contracts import MAX_SAMPLES, ColumnRule, Contract, RuleFailure, ValidationReport
from loopml.core.errors import ValidationError
from loopml.core.ids import new_id

ExistingValues = Callable[[str], pa.ChunkedArray | None]
"""The table's current values of a column, ``None`` when the table has none yet."""


def check_regex(pattern: str) -> None:
    """Refuse a pattern RE2 cannot compile, with RE2's reason."""
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(
            f"invalid regex {pattern[:80]!r}: {str(exc)[:200]}; use RE2 syntax (no lookaround "
            "or backreferences)",
            details={"field": "regex"},
        ) from None


def _scalar(value: Any, type_: pa.DataType, column: str, rule: str) -> pa.Scalar:
    try:
        return pa.scalar(value).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValidationError(
            f"the contract's {rule} {value!r} for column {column!r} does not fit its type "
            f"{type_}: fix the contract ({str(exc)[:120]})",
            details={"column": column, "rule": rule},
        ) from None


def _value_set(values: list[Any], type_: pa.DataType, column: str) -> pa.Array:
    try:
        return pa.array(values).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValidationError(
            f"the contract's allowed values for column {column!r} do not fit its type {type_}: "
            f"fix the contract ({str(exc)[:120]})",
            details={"column": column, "rule": "allowed"},
        ) from None


def _duplicates(values: pa.Array, existing: pa.ChunkedArray | None) -> pa.Array:
    counts = pc.value_counts(values)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    bad = pc.is_in(values, value_set=pc.drop_null(repeated))
    if existing is not None and len(existing):
        bad = pc.or_(bad, pc.is_in(values, value_set=pc.drop_null(existing.cast(values.type))))
    return bad


def _row_rules(
    name: str, rule: ColumnRule, values: pa.Array, existing: ExistingValues | None
) -> dict[str, pa.Array]:
    bad: dict[str, pa.Array] = {}
    if rule.not_null:
        bad["not_null"] = pc.is_null(values)
    if rule.min is not None:
        bad["min"] = pc.less(values, _scalar(rule.min, values.type, name, "min"))
    if rule.max is not None:
        bad["max"] = pc.greater(values, _scalar(rule.max, values.type, name, "max"))
    if rule.allowed is not None:
        allowed = _value_set(list(rule.allowed), values.type, name)
        bad["allowed"] = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, allowed)))
    if rule.regex is not None:
        text = values if pa.types.is_string(values.type) else values.cast(pa.string())
        bad["regex"] = pc.invert(pc.match_substring_regex(text, rule.regex))
    if rule.unique:
        bad["unique"] = _duplicates(values, existing(name) if existing else None)
    return {key: pc.fill_null(mask, False) for key, mask in bad.items()}


def _message(name: str, key: str, rule: ColumnRule) -> str:
    allowed = list(rule.allowed or [])
    return {
        "not_null": f"{name!r} is not_null but holds nulls",
        "min": f"values of {name!r} below the min {rule.min!r}",
        "max": f"values of {name!r} above the max {rule.max!r}",
        "allowed": f"values of {name!r} not among the allowed {allowed[:5]!r}"
        + (" ..." if len(allowed) > 5 else ""),
        "regex": f"values of {name!r} that do not match the regex {str(rule.regex)[:80]!r}",
        "unique": f"values of {name!r} repeated in the batch or already in the table",
    }[key]


def _type_problem(name: str, rule: ColumnRule, values: pa.Array) -> str | None:
    if rule.type is None or str(values.type) == rule.type:
        return None
    try:
        values.cast(pa.type_for_alias(rule.type), safe=True)
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return f"column {name!r} is {values.type}, which does not cast safely to {rule.type}"


def _freshness(contract: Contract, batch: pa.Table) -> str | None:
    rule = contract.freshness
    if rule is None:
        return None
    if rule.column not in batch.column_names:
        return f"freshness column {rule.column!r} is missing from the batch"
    values = batch.column(rule.column).combine_chunks()
    if not pa.types.is_timestamp(values.type):
        return f"freshness column {rule.column!r} is {values.type}, expected a timestamp"
    newest = pc.max(values).as_py()
    if newest is None:
        return f"freshness column {rule.column!r} has no values"
    newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    if newest < utcnow() - timedelta(seconds=rule.max_age_s):
        return f"the newest {rule.column!r} is {newest.isoformat()}, older than {rule.max_age_s}s"
    return None


def _rows(contract: Contract, total: int) -> str | None:
    bounds = contract.rows
    if bounds is None:
        return None
    if bounds.min is not None and total < bounds.min:
        return f"the table would hold {total} rows, fewer than the minimum {bounds.min}"
    if bounds.max is not None and total > bounds.max:
        return f"the table would hold {total} rows, more than the maximum {bounds.max}"
    return None


def _failure(
    column: str | None, rule: str, message: str, bad: pa.Array, values: pa.Array | None
) -> Any:
    rows = pc.indices_nonzero(bad).slice(0, MAX_SAMPLES)
    shown = values.take(rows).to_pylist() if values is not None else []
    return RuleFailure(
        column=column,
        rule=rule,
        message=message,
        count=int(pc.sum(bad).as_py() or 0),
        sample_rows=rows.to_pylist(),
        sample_values=[
            v if isinstance(v, (int, float, bool)) or v is None else str(v)[:100] for v in shown
        ],
    )


def check(
    contract: Contract,
    batch: pa.Table,
    *,
    existing_row_count: int,
    existing: ExistingValues | None = None,
    table: str = "",
) -> tuple[ValidationReport, pa.Array, pa.Array]:
    """Check ``batch`` against ``contract``.

    Args:
        existing_row_count: rows the table holds before the batch (0 for an overwrite).
        existing: reads a column's current values, for ``unique`` across the table.
        table: the table's name, for the report.

    Returns:
        The report, the mask of good rows and each row's reasons (``"column:rule; ..."``,
        null for good rows).

    Raises:
        ValidationError: the contract does not fit the data (a bound of the wrong type).
    """
    n = batch.num_rows
    every = pa.array([True] * n, pa.bool_()) if n else pa.array([], pa.bool_())
    failures: list[RuleFailure] = []
    reasons: list[pa.Array] = []

    def add(
        column: str | None, rule: str, message: str, bad: pa.Array, values: pa.Array | None
    ) -> None:
        failures.append(_failure(column, rule, message, bad, values))
        label = f"{column}:{rule}" if column else rule
        reasons.append(pc.if_else(bad, pa.scalar(label + "; "), pa.scalar(None, pa.string())))

    for name, rule in contract.columns.items():
        if name not in batch.column_names:
            add(name, "missing", f"column {name!r} is missing from the batch", every, None)
            continue
        values = batch.column(name).combine_chunks()
        problem = _type_problem(name, rule, values)
        if problem is not None:
            add(name, "type", problem, every, None)
            continue
        for key, bad in _row_rules(name, rule, values, existing).items():
            if pc.any(bad).as_py():
                add(name, key, _message(name, key, rule), bad, values)
    for key, problem in (
        ("rows", _rows(contract, existing_row_count + n)),
        ("freshness", _freshness(contract, batch)),
    ):
        if problem is not None:
            add(None, key, problem, every, None)
    reason = _join(reasons, n)
    good = pc.is_null(reason)
    rows_failed = n - int(pc.sum(good).as_py() or 0)
    report = ValidationReport(
        id=new_id(),
        table=table,
        on_fail=contract.on_fail,
        rows_checked=n,
        rows_failed=rows_failed,
        passed=not failures,
        failures=failures,
        created_at=datetime.now(UTC),
    )
    return report, good, reason


def _join(reasons: list[pa.Array], n: int) -> pa.Array:
    if not reasons:
        return pa.nulls(n, pa.string())
    # null_handling="skip" drops rows where every input is null (pyarrow 2x), so each label
    # carries its own separator and the trailing one is trimmed.
    joined = pc.binary_join_element_wise(*reasons, "", null_handling="replace")
    trimmed = pc.utf8_rtrim(joined, characters="; ")
    out: pa.Array = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    return out
