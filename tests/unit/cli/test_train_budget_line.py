"""``loopml train``'s ``budget`` line: the wall time against the budget, where it went, and
why the search ended early when it did; its ``best`` line: the score with the package's
size and measured latency (issue 38)."""

from __future__ import annotations

import time
from dataclasses import replace

from loopml.cli.train import _best, _spend
from loopml.train.budget import BudgetSpend
from loopml.train.service import TrainOutcome


def _summary(stopped: str) -> dict[str, float | str]:
    spend = BudgetSpend(budget_s=60.0, started=time.monotonic() - 30.0, stopped=stopped)
    spend.add({"search": 25.0, "final_fit": 2.0}, rest="other")
    return spend.summary()


def test_a_search_that_ran_to_its_budget_shows_the_share_used() -> None:
    line = _spend(_summary("budget"))

    assert line.startswith("used 30.0 of 60 s, 0.50 x (search 25.0 s, final_fit 2.0 s")
    assert "unused 30.0 s" in line
    assert "ended early" not in line


def test_a_search_that_ended_early_says_why() -> None:
    line = _spend(_summary("max_iter"))

    assert line.endswith("; the search ended early: max_iter")


def test_a_server_that_does_not_send_the_budget_still_prints_the_share() -> None:
    older = {k: v for k, v in _summary("budget").items() if k != "budget"}

    assert _spend(older).startswith("used 0.50 x (search 25.0 s")


def test_the_best_line_shows_the_package_size_and_measured_latency_beside_the_score() -> None:
    outcome = TrainOutcome(
        run_id="r",
        dataset="d@1",
        eval_hash="0" * 16,
        model_format="onnx",
        best_estimator="lgbm",
        best_score=0.99123,
        package_mb=0.4216,
        predict_ms=0.03612,
    )

    assert _best(outcome) == "lgbm (0.9912; 0.42 MB, 0.036 ms a row served)"
    assert _best(replace(outcome, package_mb=None, predict_ms=None)) == "lgbm (0.9912)"
