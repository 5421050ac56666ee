"""MLflow's tracking operations as calls into loopml's own tracking (``train.tracking`` and
its MLflow records, ``train.tracking.mlflow_records``): one function per MLflow endpoint.

MLflow's experiment id ``"0"`` (a client that names no experiment) is the project's
``mlflow.default_experiment``, created on first use. Runs created here get the longest
heartbeat timeout loopml allows: MLflow clients send no heartbeats.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from loopml.api.mlflow import convert, schemas
from loopml.api.mlflow.filters import parse_filter, parse_order
from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.mlflow_filter import parse_mlflow_filter, parse_mlflow_order
from loopml.core.mlflow_models import ModelMetric
from loopml.core.run_search import ID_PATTERN, RunSearch
from loopml.core.runs import (
    MAX_METRICS_PER_BATCH,
    TAG_VALUE_MAX,
    EndStatus,
    Experiment,
    LogBatch,
    Run,
    parse_batch,
)
from loopml.faces.context import AppContext
from loopml.train import tracking
from loopml.train.tracking import mlflow_records as records

DEFAULT_EXPERIMENT_ID = "0"
LOG_MODEL_TAG = "mlflow.log-model.history"
_LIFECYCLE = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}
MAX_PAGE = 1000
_END_STATUSES: dict[str, EndStatus] = {
    "FINISHED": "FINISHED",
    "FAILED": "FAILED",
    "KILLED": "KILLED",
}


def experiment_of(ctx: AppContext, project: str, experiment_id: str, actor: str) -> Experiment:
    """The experiment an MLflow id names (``"0"``: the default one, created on first use)."""
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        name = ctx.settings.mlflow.default_experiment
        return tracking.ensure_experiment(ctx.store, project, name, actor=actor)
    return ctx.mlflow.experiment_by_id(project, experiment_id)


def create_experiment(
    ctx: AppContext, project: str, body: schemas.ExperimentCreate, actor: str
) -> dict[str, Any]:
    """``experiments/create``: ``{"experiment_id"}``."""
    exp = tracking.create_experiment(ctx.store, project, body.name, actor=actor)
    for tag in body.tags:
        tracking.set_experiment_tag(ctx.store, project, exp.id, tag.key, tag.value, actor=actor)
    return {"experiment_id": exp.id}


def get_experiment(ctx: AppContext, project: str, experiment_id: str, actor: str) -> dict[str, Any]:
    """``experiments/get``."""
    return {"experiment": convert.experiment(experiment_of(ctx, project, experiment_id, actor))}


def get_experiment_by_name(ctx: AppContext, project: str, name: str) -> dict[str, Any]:
    """``experiments/get-by-name``."""
    return {"experiment": convert.experiment(tracking.get_experiment(ctx.store, project, name))}


def search_experiments(
    ctx: AppContext, project: str, body: schemas.ExperimentSearch
) -> dict[str, Any]:
    """``experiments/search``: MLflow's filter grammar (``core.mlflow_filter``)."""
    page = tracking.search_experiments(
        ctx.store,
        project,
        parse_mlflow_filter(body.filter, "experiments"),
        lifecycle=_LIFECYCLE[body.view_type],
        order_by=parse_mlflow_order(body.order_by, "experiments"),
        limit=min(body.max_results, MAX_PAGE),
        page_token=body.page_token or None,
    )
    found = [convert.experiment(e) for e in page.items]
    return {"experiments": found, "next_page_token": page.next_cursor}


def set_experiment_tag(
    ctx: AppContext, project: str, experiment_id: str, key: str, value: str | None, actor: str
) -> dict[str, Any]:
    """``experiments/set-experiment-tag`` and ``delete-experiment-tag`` (``value`` ``None``)."""
    tracking.set_experiment_tag(ctx.store, project, experiment_id, key, value, actor=actor)
    return {}


def update_experiment(
    ctx: AppContext, project: str, body: schemas.ExperimentUpdate, actor: str
) -> dict[str, Any]:
    """``experiments/update``: rename."""
    ctx.mlflow.update_experiment(project, body.experiment_id, name=body.new_name, actor=actor)
    return {}


def set_experiment_deleted(
    ctx: AppContext, project: str, experiment_id: str, deleted: bool, actor: str
) -> dict[str, Any]:
    """``experiments/delete`` and ``experiments/restore`` (soft; its runs stay as they are)."""
    ctx.mlflow.update_experiment(project, experiment_id, deleted=deleted, actor=actor)
    return {}


def _run_json(ctx: AppContext, project: str, run: Run) -> dict[str, Any]:
    view = ctx.mlflow.run_view(project, run)
    return convert.run(run, view.experiment_id, view.points, view.outputs)


def create_run(
    ctx: AppContext, project: str, body: schemas.RunCreate, actor: str
) -> dict[str, Any]:
    """``runs/create``: a RUNNING run with its first tags."""
    exp = experiment_of(ctx, project, body.experiment_id or DEFAULT_EXPERIMENT_ID, actor)
    tags = {t.key: t.value for t in body.tags}
    name = body.run_name or tags.get(convert.RUN_NAME_TAG) or None
    run = tracking.start_run(
        ctx.store,
        project,
        exp.name,
        heartbeat_timeout_s=records.MAX_HEARTBEAT_TIMEOUT_S,
        actor=actor,
        name=name,
        batch=parse_batch({"tags": tags}),
    )
    return {"run": _run_json(ctx, project, run)}


def get_run(ctx: AppContext, project: str, run_id: str) -> dict[str, Any]:
    """``runs/get``."""
    return {"run": _run_json(ctx, project, tracking.get_run(ctx.store, project, run_id))}


def update_run(
    ctx: AppContext, project: str, body: schemas.RunUpdate, actor: str
) -> dict[str, Any]:
    """``runs/update``: end it (FINISHED, FAILED, KILLED) and/or rename it."""
    run_id = body.id
    if body.run_name:
        ctx.mlflow.rename_run(project, run_id, body.run_name, actor=actor)
    end = _END_STATUSES.get(body.status or "")
    if end is not None:
        run = tracking.end_run(ctx.store, project, run_id, end, actor=actor)
    elif body.status == "RUNNING":  # MLflow's start_run(run_id=...) resumes a run
        run = tracking.resume_run(ctx.store, project, run_id, actor=actor)
    else:
        run = tracking.get_run(ctx.store, project, run_id)
        if body.status is not None and run.status != "RUNNING":
            raise ConflictError(
                f"run {run_id} already ended as {run.status}; it cannot be {body.status} again",
                details={"run_id": run_id, "status": run.status},
            )
    return {"run_info": _run_json(ctx, project, run)["info"]}


def set_run_deleted(
    ctx: AppContext, project: str, run_id: str, deleted: bool, actor: str
) -> dict[str, Any]:
    """``runs/delete`` and ``runs/restore``: soft, as in MLflow."""
    ctx.mlflow.set_run_deleted(project, run_id, deleted, actor=actor)
    return {}


def search_runs(ctx: AppContext, project: str, body: schemas.RunSearch) -> dict[str, Any]:
    """``runs/search``: MLflow's filter and order translated into one loopml search."""
    translated = parse_filter(body.filter)
    order_by = parse_order(body.order_by)
    ids = [experiment_id_of(ctx, project, e) for e in body.experiment_ids]
    ids = [i for i in ids if i is not None]
    if translated.matches_nothing or (body.experiment_ids and not ids):
        return {"runs": []}
    spec = RunSearch.model_validate(
        {
            "experiment_ids": ids,
            "run_ids": translated.run_ids,
            "lifecycle": _LIFECYCLE[body.run_view_type],
            "children": "flat",  # MLflow lists every run
            "status": translated.status,
            "filters": [f.model_dump() for f in translated.filters],
            "order_by": [o.model_dump() for o in order_by],
            "include": ["params", "tags"],
            "limit": min(body.max_results, MAX_PAGE),
            "cursor": body.page_token or None,
        }
    )
    page, points, outputs, exp_ids = ctx.mlflow.search_runs(project, spec)
    found = [convert.run(r, exp_ids[r.experiment], points[r.id], outputs[r.id]) for r in page.items]
    answer: dict[str, Any] = {"runs": found}
    if page.next_cursor:
        answer["next_page_token"] = page.next_cursor
    return answer


def experiment_id_of(ctx: AppContext, project: str, experiment_id: str) -> str | None:
    """An MLflow experiment id as loopml's (``"0"``: the default experiment, if it exists);
    ``None`` for one that cannot be a loopml experiment id."""
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        name = ctx.settings.mlflow.default_experiment
        return ctx.mlflow.experiment_id_by_name(project, name)
    return experiment_id if _is_id(experiment_id) else None


def _is_id(text: str) -> bool:
    return re.fullmatch(ID_PATTERN, text) is not None


def _metric(m: schemas.Metric) -> dict[str, Any]:
    value: Any = m.value
    if isinstance(value, str):
        value = "NaN" if value.lower() == "nan" else _number(m.key, value)
    return {"key": m.key, "value": value, "step": m.step, "timestamp_ms": m.timestamp}


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise ValidationError(f"metric {key!r}: {text[:40]!r} is not a number") from exc


def _batch(body: schemas.LogBatch) -> LogBatch:
    total = len(body.metrics) + len(body.params) + len(body.tags)
    if total > MAX_METRICS_PER_BATCH:
        raise ValidationError(
            f"a batch holds at most {MAX_METRICS_PER_BATCH} metrics, params and tags in "
            f"total, got {total}",
            details={"field": "metrics"},
        )
    params: dict[str, str] = {}
    for p in body.params:
        if params.setdefault(p.key, p.value) != p.value:
            raise ValidationError(f"param {p.key!r} is given twice with different values")
    return parse_batch(
        {
            "params": params,
            "metrics": [_metric(m) for m in body.metrics],
            "tags": {t.key: t.value for t in body.tags},
        }
    )


def _model_metrics(body: schemas.LogBatch) -> dict[str, list[ModelMetric]]:
    """The points MLflow 3 logged with a ``model_id``, by model."""
    found: dict[str, list[ModelMetric]] = {}
    for m in body.metrics:
        if m.model_id:
            point = _metric(m)
            value = math.nan if point["value"] == "NaN" else float(point["value"])
            found.setdefault(m.model_id, []).append(
                ModelMetric(
                    key=m.key,
                    value=value,
                    step=m.step,
                    timestamp_ms=m.timestamp,
                    run_id=body.id,
                )
            )
    return found


def log_batch(ctx: AppContext, project: str, body: schemas.LogBatch, actor: str) -> dict[str, Any]:
    """``runs/log-batch`` (and log-metric, log-parameter, set-tag: batches of one)."""
    batch = _batch(body)
    tracking.log_batch(ctx.store, project, body.id, batch, model_metrics=_model_metrics(body))
    name = batch.tags.get(convert.RUN_NAME_TAG)
    if name:  # as in MLflow, setting the run-name tag renames the run
        ctx.mlflow.rename_run(project, body.id, name, actor=actor)
    return {}


def delete_tag(ctx: AppContext, project: str, body: schemas.DeleteTag) -> dict[str, Any]:
    """``runs/delete-tag``."""
    ctx.mlflow.delete_run_tag(project, body.id, body.key)
    return {}


def log_inputs(ctx: AppContext, project: str, body: schemas.LogInputs) -> dict[str, Any]:
    """``runs/log-inputs``: each dataset becomes a run input ``mlflow_dataset``,
    ``name@digest``, so loopml's lineage sees it."""
    inputs = []
    for item in body.datasets:
        ds = item.dataset
        details = {"source_type": ds.source_type[:1000], "source": ds.source[:1000]}
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
        if context:
            details["context"] = context[:1000]
        inputs.append(
            {"kind": convert.DATASET_KIND, "ref": f"{ds.name}@{ds.digest}", "details": details}
        )
    tracking.log_batch(ctx.store, project, body.id, parse_batch({"inputs": inputs}))
    return {}


def log_model(ctx: AppContext, project: str, body: schemas.LogModel) -> dict[str, Any]:
    """``runs/log-model`` (MLflow 2): the model's description is appended to the run's
    ``mlflow.log-model.history`` tag, oldest entries dropped to fit loopml's tag limit."""
    try:
        entry = json.loads(body.model_json)
    except ValueError as exc:
        raise ValidationError("model_json is not JSON") from exc
    run = tracking.get_run(ctx.store, project, body.id)
    history = json.loads((run.tags or {}).get(LOG_MODEL_TAG, "[]"))
    history.append(entry)
    text = json.dumps(history)
    while len(text) > TAG_VALUE_MAX and len(history) > 1:
        history.pop(0)
        text = json.dumps(history)
    if len(text) > TAG_VALUE_MAX:
        text = json.dumps(
            [{k: entry.get(k) for k in ("artifact_path", "run_id", "utc_time_created")}]
        )
    tracking.log_batch(ctx.store, project, body.id, parse_batch({"tags": {LOG_MODEL_TAG: text}}))
    return {}


def metric_history(
    ctx: AppContext,
    project: str,
    run_id: str,
    key: str,
    max_results: int | None,
    page_token: str | None,
) -> dict[str, Any]:
    """``metrics/get-history``: a page of at most 1,000 points; the client asks for more."""
    limit = min(max_results or MAX_PAGE, MAX_PAGE)
    page = tracking.metric_history(ctx.store, project, run_id, key, limit=limit, cursor=page_token)
    answer: dict[str, Any] = {"metrics": [convert.metric(p) for p in page.items]}
    if page.next_cursor:
        answer["next_page_token"] = page.next_cursor
    return answer


def require_run(ctx: AppContext, project: str, run_id: str) -> None:
    """``NotFoundError`` unless ``run_id`` is a run of ``project``."""
    if not _is_id(run_id):
        raise NotFoundError(f"run {run_id[:40]!r} not found", details={"run_id": run_id[:40]})
    ctx.mlflow.require_run(project, run_id)
