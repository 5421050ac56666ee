"""A drift's onset is found in the rows: the change point of a shift in location, in spread
or to a category the reference never held, against the column's reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from loopml.cli._demo_data import batches, features
from loopml.monitor.onset import MIN_TAIL, change_point, onset_index
from loopml.monitor.sketch import categorical_reference, numeric_reference


def _rows(rng: np.random.Generator, before: int, after: np.ndarray) -> pa.Table:
    return pa.table({"x": np.concatenate([rng.normal(0, 1, before), after])})


def test_a_shift_of_location_or_of_spread_is_found_where_it_began() -> None:
    rng = np.random.default_rng(3)
    reference = {"x": numeric_reference(rng.normal(0, 1, 5000))}
    moved = onset_index(reference, _rows(rng, 600, rng.normal(1.0, 1, 300)))
    assert abs(moved - 600) <= 25, moved
    spread = onset_index(reference, _rows(rng, 600, rng.normal(0, 3, 300)))
    assert abs(spread - 600) <= 40, spread
    # Shifted from the first row: the onset is the first row.
    assert onset_index(reference, _rows(rng, 0, rng.normal(1.0, 1, 300))) <= 10


def test_a_category_the_reference_never_held_marks_its_first_row() -> None:
    rng = np.random.default_rng(5)
    reference = {"plan": categorical_reference(pa.array(rng.choice(["a", "b", "c"], 3000)))}
    values = [*rng.choice(["a", "b", "c"], 400), *rng.choice(["a", "new"], 200)]
    assert abs(onset_index(reference, pa.table({"plan": values})) - 400) <= 15


def test_too_few_rows_to_tell_start_at_the_first() -> None:
    assert change_point([np.full(MIN_TAIL, 3.0)]) == 0
    assert change_point([]) == 0


def test_a_sharp_shift_of_correlated_columns_is_placed_on_its_first_row() -> None:
    """The demo's scanner shift as the label loop's traffic has it, five rows a request:
    wherever the unshifted traffic stopped, the onset is the first shifted row. The
    measurements are correlated, so a malignant row before the shift lies high in every
    column at once; placed on the scores' mean alone, the onset landed on it (one row early)
    in 12 of these 119 stops."""
    data = batches("promote")
    names = list(features(data.first[0]))
    reference = {c: numeric_reference(pa.array([float(r[c]) for r in data.first])) for c in names}

    def sent(rows: list[dict[str, Any]], requests: int) -> list[dict[str, Any]]:
        """What ``requests`` requests of the label loop's ``Traffic`` sent: five rows at a
        time, from where the last one stopped, the last of the rows fewer."""
        out: list[dict[str, Any]] = []
        start = 0
        for _ in range(requests):
            out += rows[start : start + 5]
            start = (start + 5) % len(rows)
        return out

    early = []
    for stop in range(23, 23 + len(data.live)):
        before = sent(data.live, stop)
        rows = before + sent(data.new, 10)
        table = pa.table({c: [float(r[c]) for r in rows] for c in names})
        if (found := onset_index(reference, table)) != len(before):
            early.append((stop, found - len(before)))
    assert early == []
