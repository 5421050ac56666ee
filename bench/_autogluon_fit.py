"""AutoGluon's side of ``bench/automl.py``, run by the interpreter of a virtual environment of
its own (AutoGluon pins its own scikit-learn, LightGBM and pandas ranges):

    python3 -m venv /tmp/autogluon
    /tmp/autogluon/bin/pip install autogluon.tabular==1.6.3 lightgbm xgboost-cpu

``python _autogluon_fit.py WORK`` reads ``WORK/job.json`` (label, problem type, metric,
budget, presets, CPUs), ``WORK/train.parquet`` and ``WORK/test.parquet``; fits a
``TabularPredictor`` at that time limit into ``WORK/predictor``; writes the test rows'
predictions (probabilities in sorted class order for a classifier) to ``WORK/scores.npy``
and, to stdout as JSON, the fit's wall time, the predictor folder's size, the median of
30 one-row ``predict`` calls (after 3 to warm up), its best model, and its leaderboard: each
model's validation and test score (AutoGluon's sign: higher is better) and fit time, and the
weights of its weighted ensembles (what the search has to match: issue 53), with the time
the leaderboard took (scoring every model on the test rows), which the caller leaves out of
AutoGluon's wall time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor

METRICS = {"rmse": "root_mean_squared_error", "roc_auc": "roc_auc", "log_loss": "log_loss"}


def _leaderboard(predictor: TabularPredictor, test: pd.DataFrame) -> list[dict[str, object]]:
    """Each model's validation and test score and fit time, best first, with a weighted
    ensemble's weights by member."""
    board = predictor.leaderboard(test, silent=True)
    rows: list[dict[str, object]] = []
    for _, row in board.iterrows():
        entry: dict[str, object] = {
            "model": row["model"],
            "val": float(row["score_val"]),
            "test": float(row["score_test"]),
            "fit_s": float(row["fit_time_marginal"]),
        }
        model = predictor._trainer.load_model(row["model"])
        if hasattr(model, "_get_model_weights"):
            weights = model._get_model_weights()
            entry["weights"] = {k: round(float(v), 3) for k, v in weights.items() if v}
        rows.append(entry)
    return rows


def main() -> None:
    work = Path(sys.argv[1])
    job = json.loads((work / "job.json").read_text())
    train = pd.read_parquet(work / "train.parquet")
    labelled = pd.read_parquet(work / "test.parquet")
    test = labelled.drop(columns=job["label"])
    started = time.perf_counter()
    predictor = TabularPredictor(
        label=job["label"],
        problem_type=job["problem_type"],
        eval_metric=METRICS[job["metric"]],
        path=str(work / "predictor"),
        verbosity=0,
    ).fit(
        train,
        time_limit=job["budget_s"],
        presets=job["presets"],
        num_cpus=job["num_cpus"],
        num_gpus=0,
    )
    fit_s = time.perf_counter() - started
    if job["problem_type"] == "regression":
        scores = predictor.predict(test).to_numpy(dtype=np.float64)
    else:
        proba = predictor.predict_proba(test)
        scores = proba[sorted(proba.columns)].to_numpy(dtype=np.float64)
    np.save(work / "scores.npy", scores)
    row = test.head(1)
    for _ in range(3):
        predictor.predict(row)
    times = []
    for _ in range(30):
        begun = time.perf_counter()
        predictor.predict(row)
        times.append(time.perf_counter() - begun)
    size = sum(f.stat().st_size for f in (work / "predictor").rglob("*") if f.is_file())
    begun = time.perf_counter()
    board = _leaderboard(predictor, labelled)
    print(
        json.dumps(
            {
                "fit_s": fit_s,
                "size_mb": size / 1e6,
                "one_row_ms": 1e3 * statistics.median(times),
                "best": predictor.model_best,
                "leaderboard": board,
                "leaderboard_s": time.perf_counter() - begun,
            }
        )
    )


if __name__ == "__main__":
    main()
