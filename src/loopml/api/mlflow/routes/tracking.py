"""MLflow's tracking endpoints: experiments, runs, what runs log, metric history.

Each route is one call into ``api.mlflow.tracking``; all answer 200 with a JSON object, as
MLflow's client requires, and errors in MLflow's shape (``MlflowRoute``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from loopml.api.mlflow import schemas, tracking
from loopml.api.mlflow._route import MlflowActor, MlflowRoute, Project
from loopml.faces.context import Ctx

router = APIRouter(route_class=MlflowRoute)
Json = dict[str, Any]


@router.post("/experiments/create")
def create_experiment(
    body: schemas.ExperimentCreate, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.create_experiment(ctx, project, body, actor)


@router.get("/experiments/get")
def get_experiment(
    ctx: Ctx, project: Project, actor: MlflowActor, experiment_id: str = Query(max_length=64)
) -> Json:
    return tracking.get_experiment(ctx, project, experiment_id, actor)


@router.get("/experiments/get-by-name")
def get_experiment_by_name(
    ctx: Ctx, project: Project, experiment_name: str = Query(max_length=500)
) -> Json:
    return tracking.get_experiment_by_name(ctx, project, experiment_name)


@router.post("/experiments/search")
def search_experiments(body: schemas.ExperimentSearch, ctx: Ctx, project: Project) -> Json:
    return tracking.search_experiments(ctx, project, body)


@router.get("/experiments/search")
def search_experiments_get(
    ctx: Ctx,
    project: Project,
    max_results: int = Query(default=1000, ge=1, le=50_000),
    page_token: str | None = Query(default=None, max_length=300),
    filter: str | None = Query(default=None, max_length=1000),
    view_type: schemas.ViewType = "ACTIVE_ONLY",
    order_by: list[str] = Query(default=[], max_length=10),
) -> Json:
    body = schemas.ExperimentSearch(
        max_results=max_results,
        page_token=page_token,
        filter=filter,
        view_type=view_type,
        order_by=order_by,
    )
    return tracking.search_experiments(ctx, project, body)


@router.post("/experiments/update")
def update_experiment(
    body: schemas.ExperimentUpdate, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.update_experiment(ctx, project, body, actor)


@router.post("/experiments/delete")
def delete_experiment(
    body: schemas.ExperimentId, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.set_experiment_deleted(ctx, project, body.experiment_id, True, actor)


@router.post("/experiments/restore")
def restore_experiment(
    body: schemas.ExperimentId, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.set_experiment_deleted(ctx, project, body.experiment_id, False, actor)


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(
    body: schemas.ExperimentTag, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.set_experiment_tag(
        ctx, project, body.experiment_id, body.key, body.value, actor
    )


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(
    body: schemas.ExperimentTag, ctx: Ctx, project: Project, actor: MlflowActor
) -> Json:
    return tracking.set_experiment_tag(ctx, project, body.experiment_id, body.key, None, actor)


@router.post("/runs/create")
def create_run(body: schemas.RunCreate, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return tracking.create_run(ctx, project, body, actor)


@router.get("/runs/get")
def get_run(
    ctx: Ctx,
    project: Project,
    run_id: str | None = Query(default=None, max_length=64),
    run_uuid: str | None = Query(default=None, max_length=64),
) -> Json:
    return tracking.get_run(ctx, project, run_id or run_uuid or "")


@router.post("/runs/update")
def update_run(body: schemas.RunUpdate, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return tracking.update_run(ctx, project, body, actor)


@router.post("/runs/delete")
def delete_run(body: schemas.RunId, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return tracking.set_run_deleted(ctx, project, body.id, True, actor)


@router.post("/runs/restore")
def restore_run(body: schemas.RunId, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return tracking.set_run_deleted(ctx, project, body.id, False, actor)


@router.post("/runs/search")
def search_runs(body: schemas.RunSearch, ctx: Ctx, project: Project) -> Json:
    return tracking.search_runs(ctx, project, body)


@router.post("/runs/log-metric")
def log_metric(body: schemas.LogMetric, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    batch = schemas.LogBatch(
        run_id=body.id, metrics=[schemas.Metric.model_validate(body.model_dump())]
    )
    return tracking.log_batch(ctx, project, batch, actor)


@router.post("/runs/log-parameter")
def log_param(body: schemas.LogParam, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    batch = schemas.LogBatch(
        run_id=body.id, params=[schemas.KeyValue(key=body.key, value=body.value)]
    )
    return tracking.log_batch(ctx, project, batch, actor)


@router.post("/runs/set-tag")
def set_tag(body: schemas.SetTag, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    batch = schemas.LogBatch(
        run_id=body.id, tags=[schemas.KeyValue(key=body.key, value=body.value)]
    )
    return tracking.log_batch(ctx, project, batch, actor)


@router.post("/runs/delete-tag")
def delete_tag(body: schemas.DeleteTag, ctx: Ctx, project: Project) -> Json:
    return tracking.delete_tag(ctx, project, body)


@router.post("/runs/log-batch")
def log_batch(body: schemas.LogBatch, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return tracking.log_batch(ctx, project, body, actor)


@router.post("/runs/log-inputs")
def log_inputs(body: schemas.LogInputs, ctx: Ctx, project: Project) -> Json:
    return tracking.log_inputs(ctx, project, body)


@router.post("/runs/log-model")
def log_model(body: schemas.LogModel, ctx: Ctx, project: Project) -> Json:
    return tracking.log_model(ctx, project, body)


@router.get("/metrics/get-history")
def metric_history(
    ctx: Ctx,
    project: Project,
    metric_key: str = Query(max_length=250),
    run_id: str | None = Query(default=None, max_length=64),
    run_uuid: str | None = Query(default=None, max_length=64),
    max_results: int | None = Query(default=None, ge=1),
    page_token: str | None = Query(default=None, max_length=20),
) -> Json:
    run = run_id or run_uuid or ""
    return tracking.metric_history(ctx, project, run, metric_key, max_results, page_token)
