"""Train/eval splits of a snapshot: deterministic from its canonical row order and a seed.

Each row ``i`` (its position in the snapshot's canonical order) gets the score
``splitmix64(i XOR splitmix64(seed))``, computed with NumPy's wrapping ``uint64`` arithmetic,
so the same snapshot and seed give the same parts on any machine and any NumPy version.
Rows are taken into eval by ascending score (ties, which need a 64-bit collision, by
position):

- not stratified: the first ``round(eval_fraction * n)`` rows, at least 1 and at most
  ``n - 1`` (``round`` rounds halves up);
- stratified on a column: the same within each class (null is a class of its own), so each
  class keeps its share in both parts, and every class has at least one row in each.

Both parts keep the canonical order. Errors name what happened: fewer than two rows, an
unknown column, a class with one row (it cannot be in both parts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.datasets import MAX_CATEGORY_CHARS, SplitSpec, Stratum
from loopml.core.errors import ValidationError

MAX_STRATA_LISTED = 100
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # Arrays wrap silently on overflow (NumPy scalars would warn): keep everything arrays.
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def scores(n: int, seed: int) -> np.ndarray:
    """The split score of rows ``0 .. n-1`` for ``seed``."""
    salt = _splitmix64(np.array([seed], dtype=np.uint64))
    return _splitmix64(np.arange(n, dtype=np.uint64) ^ salt)


def _eval_count(fraction: float, rows: int) -> int:
    return min(max(math.floor(fraction * rows + 0.5), 1), rows - 1)


@dataclass(frozen=True)
class Assignment:
    """Which rows of a snapshot go to eval (``is_eval``), and for a stratified split its
    classes: the largest ``MAX_STRATA_LISTED`` with their rows per part, and how many."""

    is_eval: np.ndarray
    strata: list[Stratum]
    classes: int


def assign(table: pa.Table, spec: SplitSpec, *, columns: list[str] | None = None) -> Assignment:
    """Decide the split of ``table`` (a snapshot, in canonical order).

    Only its row count and its ``stratify`` column are read, so a snapshot kept in a file
    may pass just that column, with every column's name in ``columns`` (the default:
    ``table``'s own) for the check and its message.

    Raises:
        ValidationError: fewer than two rows, an unknown ``stratify`` column, or a class
            with a single row.
    """
    rows = table.num_rows
    if rows < 2:
        raise ValidationError(
            f"cannot split {rows} row(s): a train/eval split needs at least 2 rows",
            details={"rows": rows},
        )
    score = scores(rows, spec.seed)
    if spec.stratify is None:
        order = np.lexsort((np.arange(rows), score))
        is_eval = np.zeros(rows, dtype=bool)
        is_eval[order[: _eval_count(spec.eval_fraction, rows)]] = True
        return Assignment(is_eval, [], 0)
    names = table.column_names if columns is None else columns
    if spec.stratify not in names or spec.stratify not in table.column_names:
        raise ValidationError(
            f"cannot stratify on {spec.stratify[:80]!r}: the dataset has no such column "
            f"(columns: {', '.join(names)[:500]})",
            details={"field": "stratify", "columns": names[:1000]},
        )
    return _stratified(table, spec, score)


def _codes(table: pa.Table, column: str) -> tuple[np.ndarray, pa.Array]:
    encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    codes = np.asarray(indices, dtype=np.int64)
    # Null is a class too: give it the code after the last value.
    codes[codes < 0] = len(encoded.dictionary)
    return codes, encoded.dictionary


def _stratified(table: pa.Table, spec: SplitSpec, score: np.ndarray) -> Assignment:
    assert spec.stratify is not None
    codes, values = _codes(table, spec.stratify)
    rows = len(codes)
    sizes = np.bincount(codes)
    present = np.flatnonzero(sizes)
    single = present[sizes[present] == 1]
    if single.size:
        shown = _label(values, int(single[0]))
        raise ValidationError(
            f"cannot stratify on {spec.stratify!r}: class {shown!r} has 1 row, and each class "
            f"needs at least 2 to be in both train and eval ({single.size} class(es) have 1 "
            "row). Merge or drop rare classes in SQL, or split without stratify",
            details={"field": "stratify", "single_row_classes": int(single.size)},
        )
    wanted = np.minimum(
        np.maximum(np.floor(spec.eval_fraction * sizes + 0.5).astype(np.int64), 1), sizes - 1
    )
    order = np.lexsort((np.arange(rows), score, codes))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    ordered_codes = codes[order]
    rank = np.arange(rows) - starts[ordered_codes]
    is_eval = np.zeros(rows, dtype=bool)
    is_eval[order[rank < wanted[ordered_codes]]] = True
    listed = present[np.lexsort((present, -sizes[present]))][:MAX_STRATA_LISTED]
    strata = [
        Stratum(
            value=_label(values, int(code)),
            train=int(sizes[code] - wanted[code]),
            eval=int(wanted[code]),
        )
        for code in listed
    ]
    return Assignment(is_eval, strata, int(present.size))


def _label(values: pa.Array, code: int) -> Any:
    if code >= len(values):
        return None
    value = values[code].as_py()
    if isinstance(value, str):
        return value[:MAX_CATEGORY_CHARS]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinity are not JSON
    if isinstance(value, (bool, int, float)):
        return value
    return str(value)


def parts(table: pa.Table, assignment: Assignment) -> tuple[pa.Table, pa.Table]:
    """``(train, eval)``: the rows of each part, in the table's order."""
    is_eval = pa.array(assignment.is_eval)
    return table.filter(pc.invert(is_eval)), table.filter(is_eval)
