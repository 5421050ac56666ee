"""AutoGluon's side of ``bench/automl.py``, run by the interpreter of a virtual environment of
its own (AutoGluon pins its own scikit-learn, LightGBM and pandas ranges):

    python3 -m venv /tmp/autogluon
    /tmp/autogluon/bin/pip install autogluon.tabular==1.6.3 lightgbm xgboost-cpu

``python _autogluon_fit.py WORK`` reads ``WORK/job.json`` (label, problem type, metric,
budget, presets, CPUs), ``WORK/train.parquet`` and ``WORK/test.parquet``; fits a
``TabularPredictor`` at that time limit into ``WORK/predictor``; writes the test rows'
predictions (probabilities in sorted class order for a classifier) to ``WORK/scores.npy``
and, to stdout as JSON, the fit's wall time, the predictor folder's size, the median of
30 one-row ``predict`` calls (after 3 to warm up) and its best model.
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


def main() -> None:
    work = Path(sys.argv[1])
    job = json.loads((work / "job.json").read_text())
    train = pd.read_parquet(work / "train.parquet")
    test = pd.read_parquet(work / "test.parquet").drop(columns=job["label"])
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
    print(
        json.dumps(
            {
                "fit_s": fit_s,
                "size_mb": size / 1e6,
                "one_row_ms": 1e3 * statistics.median(times),
                "best": predictor.model_best,
            }
        )
    )


if __name__ == "__main__":
    main()
