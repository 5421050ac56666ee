"""The sequential drift test (``monitor/sequential.py``): its runs compose piece by piece to
what the whole window gives, its CUSUMs are the textbook recursion, its ``theta`` solves the
equation its threshold rests on, and its false-alarm rate stays under the share of
``p_value`` it spends. The monitor's rounds over it are in ``test_drift_false_alarms.py``."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest

from loopml.monitor import sequential
from loopml.monitor.onset import column_scores, score_support
from loopml.monitor.reference import profile_table
from loopml.monitor.sketch import ColumnReference

CATEGORIES = ["a", "b", "c", "d", "e"]
SHARES = [0.5, 0.3, 0.15, 0.04, 0.01]


def _table(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pa.Table:
    return pa.table(
        {
            "x": rng.normal(shift, 1, rows),
            "count": rng.integers(0, 6, rows).astype(np.float64),
            "plan": rng.choice(CATEGORIES, rows, p=SHARES),
        }
    )


@pytest.fixture(scope="module")
def features() -> dict[str, ColumnReference]:
    train = _table(np.random.default_rng(1), 4000)
    kinds = {"x": "numeric", "count": "numeric", "plan": "categorical"}
    profile = profile_table(train, kinds, task="classification")  # type: ignore[arg-type]
    return dict(profile.features)


def _naive(increments: np.ndarray) -> tuple[float, float]:
    """The CUSUM from 0, row by row: its last value and its peak."""
    value, peak = 0.0, 0.0
    for step in increments:
        value = max(0.0, value + step)
        peak = max(peak, value)
    return value, peak


def test_pieces_merged_in_order_are_the_whole_window(features: dict[str, ColumnReference]) -> None:
    rng = np.random.default_rng(2)
    rows = _table(rng, 700, shift=0.3)
    whole = sequential.piece(features, rows)
    cuts = [0, 1, 40, 41, 300, 512, 700]
    merged = None
    for low, high in itertools.pairwise(cuts):
        merged = sequential.merge(merged, sequential.piece(features, rows.slice(low, high - low)))
    assert merged is not None
    assert merged["rows"] == whole["rows"] == 700
    assert merged["columns"].keys() == whole["columns"].keys() == set(features)
    for name, runs in whole["columns"].items():
        assert np.allclose(merged["columns"][name], runs, rtol=1e-9, atol=1e-9), name
    # 2 scores x 2 directions for a number, 1 x 2 for a category
    assert [len(whole["columns"][n]) for n in ("x", "count", "plan")] == [4, 4, 2]


def test_the_runs_are_the_cusum_recursion(features: dict[str, ColumnReference]) -> None:
    rows = _table(np.random.default_rng(3), 400, shift=0.8)
    state = sequential.piece(features, rows)
    location = column_scores(features["x"], rows["x"])[0]
    end, sum_, peak, top = state["columns"]["x"][0]  # location, up
    assert (end, peak) == pytest.approx(_naive(location - sequential.K))
    assert sum_ == pytest.approx(float(np.sum(location - sequential.K)))
    assert top == pytest.approx(float(np.max(np.cumsum(location - sequential.K))))
    assert peak > 40  # shifted by 0.8 std: the rise's CUSUM climbs about 0.3 a row


def test_theta_solves_the_equation_the_threshold_rests_on(
    features: dict[str, ColumnReference],
) -> None:
    found = sequential.statistics(features)
    assert [(c, s, d) for c, s, d, _ in found][:4] == [
        ("x", "location", "up"),
        ("x", "location", "down"),
        ("x", "spread", "up"),
        ("x", "spread", "down"),
    ]
    assert len(found) == 10
    # a continuous column's scores are uniform on [-sqrt 3, sqrt 3]: theta is about 0.98
    assert found[0][3] == pytest.approx(0.98, abs=0.01)
    for name, score, direction, theta in found:
        index = ["location", "spread", "rarity"].index(score) % 2
        (values, weights) = score_support(features[name])[index]
        clipped = np.clip(values, -sequential.CLIP, sequential.CLIP)
        mean = np.dot(weights, clipped)
        x = (clipped - mean) / math.sqrt(np.dot(weights, (clipped - mean) ** 2))
        x = x if direction == "up" else -x
        assert np.dot(weights, np.exp(theta * (x - sequential.K))) == pytest.approx(1, abs=1e-6)


def test_the_threshold_grows_with_the_rows_as_a_logarithm() -> None:
    low = sequential.threshold(60, 32, 5e-4, 0.98)
    assert sequential.threshold(1800, 32, 5e-4, 0.98) - low == pytest.approx(
        (math.log(1800 / 60) + math.log(11 * 12 / (6 * 7))) / 0.98
    )
    assert 19 < low < 21


def test_unshifted_windows_alarm_less_often_than_the_share_they_spend(
    features: dict[str, ColumnReference],
) -> None:
    """At a generous alpha of 0.2 (so that alarms can be counted), 300 unshifted windows of
    600 rows, read every 30 rows, alarm in fewer than 20 % of them (the bound is loose: its
    union over each row a CUSUM could start from counts the same excursion many times)."""
    rng = np.random.default_rng(4)
    alarms = 0
    for _ in range(300):
        state = None
        for _ in range(20):
            state = sequential.merge(state, sequential.piece(features, _table(rng, 30)))
            found = sequential.verdict(state, features, 0.2)
            if found is not None and found["alarm"]:
                alarms += 1
                break
    assert alarms < 60


def test_a_new_category_and_a_shift_are_seen_and_named(
    features: dict[str, ColumnReference],
) -> None:
    rng = np.random.default_rng(5)
    calm = sequential.piece(features, _table(rng, 1000))
    assert not sequential.verdict(calm, features, 5e-4)["alarm"]  # type: ignore[index]
    rare = _table(rng, 60).set_column(2, "plan", pa.array(["e"] * 60))
    found = sequential.verdict(
        sequential.merge(calm, sequential.piece(features, rare)), features, 5e-4
    )
    assert found is not None
    assert found["alarm"], found
    assert (found["column"], found["score"], found["direction"]) == ("plan", "rarity", "up")
    assert found["rows"] == 1060
    assert found["cusum"] >= found["threshold"]
    lower = _table(rng, 100, shift=-1.0)
    found = sequential.verdict(
        sequential.merge(calm, sequential.piece(features, lower)), features, 5e-4
    )
    assert found is not None
    assert found["alarm"], found
    assert (found["column"], found["score"], found["direction"]) == ("x", "location", "down")
