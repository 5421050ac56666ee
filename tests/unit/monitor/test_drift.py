"""Drift statistics from sketches, checked against SciPy on the raw samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from loopml.monitor.drift import DriftConfig, dataset_drift, ks_statistic, wasserstein
from loopml.monitor.sketch import (
    categorical_reference,
    merge,
    numeric_reference,
    reduce,
    reduce_numeric,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_ks_statistic_is_exact_on_a_small_reference() -> None:
    rng = _rng()
    ref, cur = rng.normal(0, 1, 800), rng.normal(0.2, 1.1, 5000)
    reference = numeric_reference(ref)
    assert reference.exact
    expected = stats.ks_2samp(ref, cur).statistic
    assert ks_statistic(reference, reduce_numeric(reference, cur)) == pytest.approx(expected)


def test_ks_statistic_is_exact_on_discrete_values_with_ties() -> None:
    rng = _rng()
    ref, cur = rng.poisson(4, 50_000).astype(float), rng.poisson(4.4, 20_000).astype(float)
    reference = numeric_reference(ref)
    assert reference.exact  # few distinct values: every one is an edge
    expected = stats.ks_2samp(ref, cur).statistic
    assert ks_statistic(reference, reduce_numeric(reference, cur)) == pytest.approx(expected)


@pytest.mark.parametrize("exact", [True, False])
def test_wasserstein_matches_scipy(exact: bool) -> None:
    rng = _rng()
    size = 900 if exact else 50_000
    ref, cur = rng.lognormal(0, 0.5, size), rng.lognormal(0.2, 0.6, 100_000)
    reference = numeric_reference(ref)
    assert reference.exact is exact
    expected = stats.wasserstein_distance(ref, cur)
    got = wasserstein(reference, reduce_numeric(reference, cur))
    assert got == pytest.approx(expected, rel=0.03)


def test_counts_of_chunks_merge_to_the_counts_of_the_whole() -> None:
    rng = _rng()
    reference = numeric_reference(rng.normal(0, 1, 500))
    cur = rng.normal(0.5, 2, 3000)
    cur[::17] = np.nan
    whole = reduce_numeric(reference, cur)
    parts = merge(reduce_numeric(reference, cur[:1000]), reduce_numeric(reference, cur[1000:]))
    sums = ("below_sum", "above_sum")
    assert parts.model_dump(exclude=set(sums)) == whole.model_dump(exclude=set(sums))
    for name in sums:
        assert getattr(parts, name) == pytest.approx(getattr(whole, name))
    assert whole.missing == len(cur[::17])
    assert whole.below + whole.above > 0


def test_unshifted_columns_do_not_drift_and_a_shifted_one_does() -> None:
    rng = np.random.default_rng(3)
    for ref_rows in (600, 20_000):  # KS / chi-square, then Wasserstein / Jensen-Shannon
        ref = {
            "a": rng.normal(0, 1, ref_rows),
            "b": rng.uniform(0, 1, ref_rows),
            "c": pa.array(rng.choice(["x", "y", "z"], ref_rows)),
        }
        cur = {
            "a": rng.normal(0, 1, 5000),
            "b": rng.uniform(0.4, 1.4, 5000),
            "c": pa.array(rng.choice(["x", "y", "z"], 5000)),
        }
        references = {
            "a": numeric_reference(ref["a"]),
            "b": numeric_reference(ref["b"]),
            "c": categorical_reference(ref["c"]),
        }
        windows = {name: reduce(references[name], values) for name, values in cur.items()}
        result = dataset_drift(references, windows)
        by_name = {c.column: c for c in result.columns}
        small = ref_rows <= 1000
        assert by_name["a"].method == ("ks" if small else "wasserstein")
        assert by_name["c"].method == ("chi2" if small else "js")
        assert [c.column for c in result.columns if c.drifted] == ["b"]
        assert by_name["b"].out_of_range > 0
        assert by_name["b"].psi > 0.1
        # a window's first look (DriftConfig.level), shared among the 3 columns
        assert by_name["b"].p_value < by_name["b"].alpha == DriftConfig().level(1) / 3
        assert result.drifted_columns == 1
        # One column drifted beyond chance is input drift (it took half of them before);
        # drift_share still asks for more when set.
        assert result.dataset_drift
        assert not dataset_drift(references, windows, DriftConfig(drift_share=0.5)).dataset_drift


def test_a_new_category_is_counted_and_drifts() -> None:
    rng = _rng()
    reference = categorical_reference(pa.array(rng.choice(["x", "y"], 5000)))
    window = reduce(reference, pa.array(rng.choice(["x", "y", "new"], 3000)))
    drift = dataset_drift({"c": reference}, {"c": window})
    assert drift.columns[0].unseen == window.unseen > 800
    assert drift.columns[0].drifted
    assert drift.dataset_drift


def test_too_few_rows_are_not_judged() -> None:
    reference = numeric_reference(np.arange(100.0))
    drift = dataset_drift({"a": reference}, {"a": reduce(reference, np.array([500.0] * 5))})
    assert not drift.columns[0].judged
    assert not drift.dataset_drift
    assert drift.columns[0].out_of_range == 5


def test_psi_can_decide_when_configured() -> None:
    rng = _rng()
    reference = numeric_reference(rng.normal(0, 1, 5000))
    window = reduce(reference, rng.normal(0, 1, 5000))
    config = DriftConfig(numeric_method="psi")
    column = dataset_drift({"a": reference}, {"a": window}, config).columns[0]
    assert column.method == "psi"
    assert column.score == column.psi < 0.05
    assert not column.drifted


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.normal(0, 1, 20_000),
        lambda r: r.lognormal(0, 2, 20_000),  # heavy tail: most edges in a few grid cells
        lambda r: r.integers(0, 200, 20_000).astype(float),  # exact, more than 32 edges
        lambda r: r.poisson(3, 20_000).astype(float),  # exact, few edges: by comparison
        lambda r: np.concatenate([r.normal(0, 1, 20_000), [1e12, -1e12]]),
    ],
)
@pytest.mark.parametrize("rows", [200, 20_000])  # searched value by value, then by grid
def test_the_fast_counts_equal_a_binary_search(make: Any, rows: int) -> None:
    rng = _rng()
    reference = numeric_reference(make(rng))
    values = np.concatenate([make(rng)[:rows], [np.nan, 1e15, -1e15], reference.edges[:50]])
    window = reduce_numeric(reference, values)
    edges = np.asarray(reference.edges)
    present = values[~np.isnan(values)]
    where = np.searchsorted(edges, present, side="left")
    assert window.gaps == np.bincount(where, minlength=edges.size + 1).tolist()
    if reference.exact:
        hit = present == edges[np.minimum(where, edges.size - 1)]
        assert window.equal == np.bincount(where[hit], minlength=edges.size).tolist()
    assert window.below == np.count_nonzero(present < edges[0])
    assert window.above == np.count_nonzero(present > edges[-1])
    assert window.missing == 1


def test_inputs_of_mixed_types_are_read_row_by_row() -> None:
    from loopml.monitor.reference import Reference, profile_table
    from loopml.monitor.windows import piece_state

    train = pa.table({"x": [1.0, 2.0, 3.0] * 20, "c": ["a", "b", "c"] * 20})
    profile = profile_table(train, {"x": "numeric", "c": "categorical"}, task="regression")
    reference = Reference(status="ready", profile=profile)
    texts = ['{"x": 1.5, "c": "a"}', '{"x": "oops", "c": 7}', '{"c": true}'] * 20
    rows = pa.table(
        {
            "inference_id": [f"i{n}" for n in range(60)],
            "row_index": [0] * 60,
            "role": ["primary"] * 60,
            "latency_ms": [1.0] * 60,
            "inputs": texts,
            "prediction": ["1"] * 60,
            "prediction_value": [1.0] * 60,
        }
    )
    state = piece_state(rows, reference)
    assert state["features"]["x"]["rows"] == 20
    assert state["features"]["x"]["missing"] == 40
    assert state["features"]["c"]["counts"][0] == 20  # "a"
    assert state["features"]["c"]["unseen"] == 40  # "7" and "true": never seen in training


def test_inputs_read_in_parts_count_as_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.monitor import windows
    from loopml.monitor.reference import Reference, profile_table

    train = pa.table({"x": [1.0, 2.0, 3.0] * 20, "c": ["a", "b", "c"] * 20})
    profile = profile_table(train, {"x": "numeric", "c": "categorical"}, task="regression")
    reference = Reference(status="ready", profile=profile)
    # The first part's rows lack "c" (typed null there), the next ones' hold it; an integer
    # "x" in one part and a fraction in another.
    texts = ['{"x": 2}'] * 5 + ['{"x": 1.5, "c": "a"}', '{"x": 3, "c": "z"}'] * 10
    rows = pa.table(
        {
            "inference_id": [f"i{n}" for n in range(25)],
            "row_index": [0] * 25,
            "role": ["primary"] * 25,
            "latency_ms": [1.0] * 25,
            "inputs": texts,
            "prediction": ["1"] * 25,
            "prediction_value": [1.0] * 25,
        }
    )
    whole = windows.piece_state(rows, reference)
    monkeypatch.setattr(windows, "JSON_PART_ROWS", 5)

    parted = windows.piece_state(rows, reference)

    assert parted["features"] == whole["features"]
    assert parted["features"]["x"]["rows"] == 25
    assert parted["features"]["c"]["missing"] == 5
    assert parted["features"]["c"]["counts"][0] == 10  # "a"
    assert parted["features"]["c"]["unseen"] == 10  # "z"
