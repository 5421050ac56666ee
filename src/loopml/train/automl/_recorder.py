"""``TrialRecorder``: AutoML trials as child runs of a tracking run.

A child run is a run whose ``parent_run_id`` is the AutoML run; it also carries the tag
``loopml.parent_run_id``, so a tag filter finds a run's trials (run search has no parent
filter). Trials arrive many per second on small data, so they are written in batches, one
transaction per ``flush_every_s``, which also keeps the parent's heartbeat fresh through a
search longer than its heartbeat timeout.
"""

from __future__ import annotations

import math
import time
from typing import Any

from loopml.core.clock import utcnow
from loopml.core.runs import LogBatch, MetricPoint, Run
from loopml.store import MetadataStore, run_logs, runs
from loopml.train.automl._types import AutoMLResult, Trial

PARENT_TAG = "loopml.parent_run_id"
TRIAL_TAG = "loopml.automl.trial"
ESTIMATOR_TAG = "loopml.automl.estimator"
NODE_TAG = "loopml.automl.node"


def _text(value: Any) -> str:
    return str(value)[:6000]


def _value(value: float) -> float:
    # A diverged trial can score inf (FLAML's mape does); runs keep NaN, never infinity.
    return value if math.isfinite(value) else math.nan


def trial_batch(trial: Trial, metric: str, parent_run_id: str) -> LogBatch:
    """What one trial's child run logs: its configuration, score and timings."""
    now_ms = int(utcnow().timestamp() * 1000)
    params = {"estimator": trial.estimator} | {k: _text(v) for k, v in trial.config.items()}
    values = {
        metric: trial.score,
        "train_time_s": trial.train_time_s,
        "elapsed_s": trial.elapsed_s,
        "sample_size": float(trial.sample_size),
        "estimated_mb": trial.size_mb,
        "estimated_predict_ms": trial.predict_ms,
    }
    tags = {
        PARENT_TAG: parent_run_id,
        TRIAL_TAG: str(trial.iteration),
        ESTIMATOR_TAG: trial.estimator,
        "loopml.automl.improved": "true" if trial.improved else "false",
        "loopml.automl.source": trial.source,
    }
    if trial.node:
        tags[NODE_TAG] = trial.node
    return LogBatch(
        params=dict(list(params.items())[:100]),
        metrics=[
            MetricPoint(key=k, value=_value(v), step=trial.iteration, timestamp_ms=now_ms)
            for k, v in values.items()
        ],
        tags=tags,
    )


class TrialRecorder:
    """Records each trial as a FINISHED child run of ``parent``; pass it as ``on_trial``.

    Call ``flush()`` after ``run_automl`` returns (or fails) to write the last trials.

    Attributes:
        child_run_ids: the ids of the child runs written so far, in trial order.
    """

    def __init__(
        self,
        store: MetadataStore,
        parent: Run,
        *,
        metric: str,
        actor: str,
        flush_every_s: float = 1.0,
    ) -> None:
        self.child_run_ids: list[str] = []
        self._store = store
        self._parent = parent
        self._metric = metric
        self._actor = actor
        self._flush_every_s = flush_every_s
        self._pending: list[Trial] = []
        self._last_flush = time.monotonic()

    def __call__(self, trial: Trial) -> None:
        self._pending.append(trial)
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write the pending trials in one transaction and heartbeat the parent."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        parent = self._parent
        written: list[str] = []
        with self._store.session() as session:
            runs.heartbeat(session, parent.project, parent.id)
            for trial in self._pending:
                child = runs.create(
                    session,
                    parent.project,
                    parent.experiment,
                    name=f"trial-{trial.iteration:04d}-{trial.estimator}",
                    heartbeat_timeout_s=parent.heartbeat_timeout_s,
                    parent_run_id=parent.id,
                    actor=self._actor,
                )
                batch = trial_batch(trial, self._metric, parent.id)
                run_logs.log_batch(session, parent.project, child.id, batch)
                runs.set_status(session, parent.project, child.id, "FINISHED", actor=self._actor)
                written.append(child.id)
        self.child_run_ids.extend(written)
        self._pending.clear()

    def log_result(self, result: AutoMLResult) -> None:
        """Write the last trials, then the search's summary (``result_batch``) on the parent.

        The parent stays RUNNING: packaging and registering the model come next.
        """
        self.flush()
        with self._store.session() as session:
            run_logs.log_batch(session, self._parent.project, self._parent.id, result_batch(result))


def result_batch(result: AutoMLResult) -> LogBatch:
    """What the parent run logs about the search: settings, winner, score and timings."""
    now_ms = int(utcnow().timestamp() * 1000)
    params = {
        "task": result.task,
        "metric": result.metric,
        "budget_s": f"{result.budget_s:g}",
        "seed": str(result.seed),
        "estimators": ",".join(result.estimators),
        "eval_method": result.eval_method,
        "best_estimator": result.best_estimator,
        "final_fit_rows": str(result.final_fit_rows),
        "bagged_folds": str(result.bagged_folds),
        "n_jobs": str(result.n_jobs),
        "used_columns": _text(",".join(result.used_columns)),
        "excluded_columns": _text(",".join(result.dropped_columns)),
        "stopped": result.stopped,
        "ensemble_in_search": "true" if result.ensemble_in_search else "false",
        "on": result.on,
        "concurrent_trials": str(result.concurrent_trials),
    } | {f"best.{k}": _text(v) for k, v in result.best_config.items()}
    limits = {"max_model_mb": result.max_model_mb, "max_predict_ms": result.max_predict_ms}
    params |= {k: f"{v:g}" for k, v in limits.items() if v is not None}
    values = {
        f"best_{result.metric}": result.best_score,
        "trials": float(len(result.trials)),
        "elapsed_s": result.elapsed_s,
        "estimated_mb": result.size_mb,
        "estimated_predict_ms": result.predict_ms,
    } | {f"{phase}_s": seconds for phase, seconds in result.timings.items()}
    return LogBatch(
        params=dict(list(params.items())[:100]),
        metrics=[
            MetricPoint(key=k, value=_value(v), timestamp_ms=now_ms) for k, v in values.items()
        ],
        tags={"loopml.automl": "true"},
    )
