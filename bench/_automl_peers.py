"""What ``bench/automl.py`` measures outside its own process: AutoGluon, fitted and timed by
``_autogluon_fit.py`` in its own virtual environment, and a loopml package's one-row
latency through the model server (``python -m loopml.serve``, one keep-alive connection,
the round trip a client sees)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from _automl_data import DataSet
from _serving_platform import _process, free_port

HERE = Path(__file__).resolve().parent
WARM_UP, TIMED = 5, 100


@dataclass
class Result:
    label: str
    score: float
    wall_s: float
    size_mb: float | None = None
    note: str = ""
    one_row_ms: float | None = None


def autogluon(
    python: str,
    spec: DataSet,
    train: pd.DataFrame,
    test: pd.DataFrame,
    budget: float,
    presets: str,
    n_jobs: int,
) -> tuple[Result, np.ndarray[Any, Any]]:
    """``TabularPredictor.fit`` at ``budget`` seconds with ``presets``; the result (its score
    left for the caller) and the test rows' predictions."""
    work = Path(tempfile.mkdtemp(prefix="bench-autogluon-"))
    try:
        train.to_parquet(work / "train.parquet")
        test.to_parquet(work / "test.parquet")
        problem = "regression" if spec.task == "regression" else "multiclass"
        if spec.task == "classification" and train["target"].nunique() == 2:
            problem = "binary"
        job = {
            "label": "target",
            "problem_type": problem,
            "metric": spec.metric,
            "budget_s": budget,
            "presets": presets,
            "num_cpus": n_jobs,
        }
        (work / "job.json").write_text(json.dumps(job))
        started = time.perf_counter()
        done = subprocess.run(
            [python, str(HERE / "_autogluon_fit.py"), str(work)],
            capture_output=True,
            text=True,
            check=False,
        )
        # The leaderboard (every model scored on the test rows) is the bench's reading of
        # the fit, no part of it.
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"AutoGluon ({presets}) failed:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        wall -= figures["leaderboard_s"]
        scores = np.load(work / "scores.npy")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = Result(
        f"AutoGluon {presets}",
        float("nan"),
        wall,
        figures["size_mb"],
        note=f"best {figures['best']}; fit {figures['fit_s']:.1f} s (of {wall:.1f} s with start)"
        + "".join(f"\n{' ' * 33}{_board_line(entry)}" for entry in figures["leaderboard"]),
        one_row_ms=figures["one_row_ms"],
    )
    return result, scores


def _board_line(entry: dict[str, Any]) -> str:
    """One model of AutoGluon's leaderboard: validation and test score (its sign: higher is
    better), fit time, and a weighted ensemble's weights."""
    line = f"{entry['model']:<28} val {entry['val']:.5g} test {entry['test']:.5g}"
    line += f" fit {entry['fit_s']:.1f} s"
    weights = entry.get("weights")
    if weights:
        line += " weights " + ", ".join(f"{k} {v:g}" for k, v in weights.items())
    return line


def model_server_one_row_ms(package: Any, row: dict[str, Any]) -> float:
    """The median of ``TIMED`` one-row ``POST /predict`` round trips to a model server on
    ``package`` (a ``package_model`` result), one keep-alive connection, after a warm-up."""
    port = free_port()
    command = [sys.executable, "-m", "loopml.serve", "--package", str(package.path)]
    command += ["--manifest-sha256", package.manifest_sha256, "--name", "bench"]
    command += ["--version", "1", "--deployment", "bench", "--port", str(port)]
    # What a client sends: the signature's columns (the columns AutoML left out are not in
    # it, and the server refuses a column it does not know).
    body = {"instances": [{c.name: row[c.name] for c in package.manifest.signature.inputs}]}
    with (
        _process(command, f"http://127.0.0.1:{port}/v2/health/ready", "loopml.serve"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        for _ in range(WARM_UP):
            client.post("/predict", json=body).raise_for_status()
        times = []
        for _ in range(TIMED):
            begun = time.perf_counter()
            client.post("/predict", json=body).raise_for_status()
            times.append(time.perf_counter() - begun)
    return 1e3 * statistics.median(times)
