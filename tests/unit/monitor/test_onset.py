"""A drift's onset is found in the rows: the change point of a shift in location, in spread
or to a category the reference never held, against the column's reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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
