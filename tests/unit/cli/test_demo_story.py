"""The demo's story holds by construction, not by chance (issue 19: "5 runs each, all as
narrated"): five runs per scenario of what the demo's loop decides, without a server.

Each run trains the champion on the first batch and the challenger on the whole table as
the ``retrain`` loop does (a snapshot in canonical order, its frozen 20 % eval split with
seed 0, AutoML on the train part), scores both on the challenger's eval set with the
registry's ``evaluate`` and judges them with the demo's policy (``core.gate.judge``). What
varies between real runs is what a time-boxed AutoML ends with; here each run is pinned to
one learner AutoML may pick (the last to all of them, XGBoost's default included), with its
own seed, so the five runs cover every kind of winner. The end-to-end test
(``tests/e2e/test_demo.py``) runs the real demo, narration included, once per scenario in CI
and ``LOOPML_DEMO_RUNS`` times when asked.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from loopml.cli._demo_data import (
    FIRST_ROWS,
    LIVE_ROWS,
    POLICY,
    POLICY_FLOOR,
    POLICY_MARGIN,
    TARGET,
    batches,
)
from loopml.core.datasets import SplitSpec
from loopml.core.gate import EvaluationReport, GatePolicy, judge
from loopml.data import split
from loopml.data.canonical import canonicalize, content_hash
from loopml.train.automl import run_automl
from loopml.train.evaluation import evaluate

# One run per learner AutoML picks from; the fifth searches all of them.
RUNS: list[list[str] | None] = [["lgbm"], ["rf"], ["extra_tree"], ["lrl1"], None]
# How far the promote challenger must clear the policy's margin over the champion: the
# story is "a clear win", not a hair's breadth.
CLEAR_WIN = 0.05


def _snapshot(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The train part, the eval part and the eval hash of a snapshot of ``records``."""
    table = canonicalize(pa.Table.from_pylist(records))
    assignment = split.assign(table, SplitSpec(eval_fraction=0.2, seed=0))
    train, held_out = split.parts(table, assignment)
    return train.to_pandas(), held_out.to_pandas(), content_hash(held_out, ordered=True)


def _fit(train: pd.DataFrame, run: int) -> Any:
    result = run_automl(
        train,
        TARGET,
        task="classification",
        budget_s=60,
        max_iter=2,
        seed=run,
        estimators=RUNS[run],
        n_jobs=1,
    )
    return result.model


@pytest.fixture(scope="module")
def champions() -> list[Any]:
    """The champion of each run: trained on the first batch (the same in both scenarios)."""
    first = batches("promote").first
    assert len(first) == FIRST_ROWS
    train, _, _ = _snapshot(first)
    return [_fit(train, run) for run in range(len(RUNS))]


def _report(model: Any, eval_rows: pd.DataFrame, eval_hash: str) -> EvaluationReport:
    return evaluate(model, eval_rows, TARGET, "classification", eval_hash=eval_hash)


@pytest.mark.parametrize("scenario", ["promote", "refuse"])
def test_every_run_of_each_scenario_ends_as_narrated(champions: list[Any], scenario: str) -> None:
    data = batches(scenario)
    assert len(data.live) == LIVE_ROWS
    # The table the retrain snapshots: the first batch, then the new one (the live rows go
    # to the deployment, their labels to its feedback table).
    train, eval_rows, eval_hash = _snapshot(data.first + data.new)
    policy = GatePolicy.model_validate(POLICY)
    for run, champion in enumerate(champions):
        challenger = _report(_fit(train, run), eval_rows, eval_hash)
        held = _report(champion, eval_rows, eval_hash)
        rules = judge(policy, challenger, held, champion_version=1)
        verdict = {r.rule: r.passed for r in rules}
        scores = (challenger.metrics["roc_auc"], held.metrics["roc_auc"])
        if scenario == "promote":
            assert verdict == {"threshold": True, "must_beat": True}, (run, scores)
            assert scores[0] >= scores[1] + POLICY_MARGIN + CLEAR_WIN, (run, scores)
        else:
            # Refused on the floor, whatever the champion scored there.
            assert verdict["threshold"] is False, (run, scores)
            assert scores[0] < POLICY_FLOOR - CLEAR_WIN, (run, scores)
