"""A column's reference and window distributions in the same bars (``monitor.histograms``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from loopml.monitor.histograms import distributions
from loopml.monitor.sketch import categorical_reference, numeric_reference, reduce


def test_a_quantile_reference_is_coarsened_to_about_twenty_bars_of_equal_width() -> None:
    rng = np.random.default_rng(0)
    reference = numeric_reference(rng.normal(0, 1, 50_000))
    assert len(reference.edges) > 100  # quantile edges, not exact
    window = reduce(reference, rng.normal(2.0, 1, 5_000))
    found = distributions(reference, window)
    assert found.kind == "numeric"
    assert 10 <= len(found.bins) <= 21
    assert sum(b.reference for b in found.bins) == pytest.approx(1.0)
    assert sum(b.current_rows for b in found.bins) == 5_000
    assert sum(b.current for b in found.bins) == pytest.approx(1.0)
    # The window moved right: its mass above 0 is larger than the reference's.
    right = [b for b in found.bins[:-1] if float(b.label.split(" to ")[0]) >= 0]
    assert sum(b.current for b in right) > sum(b.reference for b in right) + 0.2
    # Values above the training range get their own bar, outside the reference.
    outside = found.bins[-1]
    assert outside.label.startswith("above")
    assert outside.reference == 0.0


def test_an_exact_reference_with_few_values_gets_a_bar_per_value() -> None:
    reference = numeric_reference(np.array([0.0] * 30 + [1.0] * 60 + [2.0] * 10))
    window = reduce(reference, np.array([0.0] * 10 + [2.0] * 10))
    found = distributions(reference, window)
    assert [b.label for b in found.bins] == ["0 or below", "1", "2"]
    assert [b.reference for b in found.bins] == pytest.approx([0.3, 0.6, 0.1])
    assert [b.current_rows for b in found.bins] == [10, 0, 10]


def test_categories_keep_the_most_frequent_and_fold_the_rest_with_unseen_values() -> None:
    values = [f"c{i:02d}" for i in range(30) for _ in range(30 - i)]
    reference = categorical_reference(pa.array(values))
    window = reduce(reference, pa.array(["c00"] * 5 + ["new"] * 5))
    found = distributions(reference, window)
    assert len(found.bins) == 20
    assert found.bins[0].label == "c00"
    assert found.bins[0].current == pytest.approx(0.5)
    assert found.bins[-1].label == "all other values"
    assert found.bins[-1].current_rows == 5
    assert sum(b.reference for b in found.bins) == pytest.approx(1.0)


def test_no_window_yet_gives_the_reference_alone() -> None:
    reference = numeric_reference(np.arange(100.0))
    found = distributions(reference, None)
    assert found.current_rows == 0
    assert all(b.current == 0 for b in found.bins)
    assert sum(b.reference for b in found.bins) == pytest.approx(1.0)
