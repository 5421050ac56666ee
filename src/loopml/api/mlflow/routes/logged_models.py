"""MLflow 3's ``/logged-models`` and ``runs/outputs``; each route one call into
``api.mlflow.logged_models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from loopml.api.mlflow import logged_models, schemas
from loopml.api.mlflow._route import MlflowActor, MlflowRoute, Project
from loopml.faces.context import Ctx

router = APIRouter(route_class=MlflowRoute)
Json = dict[str, Any]
MODEL = "/logged-models/{model_id}"
MODEL_ID = Path(max_length=64)


@router.post("/logged-models")
def create(body: schemas.LoggedModelCreate, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return logged_models.create(ctx, project, body, actor)


@router.post("/logged-models/search")
def search(body: schemas.LoggedModelSearch, ctx: Ctx, project: Project) -> Json:
    return logged_models.search(ctx, project, body)


@router.get(MODEL)
def get(ctx: Ctx, project: Project, model_id: str = MODEL_ID) -> Json:
    return logged_models.get(ctx, project, model_id)


@router.patch(MODEL)
def finalize(
    body: schemas.LoggedModelFinalize, ctx: Ctx, project: Project, model_id: str = MODEL_ID
) -> Json:
    return logged_models.finalize(ctx, project, model_id, body.status)


@router.delete(MODEL)
def delete(ctx: Ctx, project: Project, actor: MlflowActor, model_id: str = MODEL_ID) -> Json:
    return logged_models.delete(ctx, project, model_id, actor)


@router.post(MODEL + "/params")
def log_params(
    body: schemas.LoggedModelEntries, ctx: Ctx, project: Project, model_id: str = MODEL_ID
) -> Json:
    return logged_models.update(ctx, project, model_id, params=body.params)


@router.patch(MODEL + "/tags")
def set_tags(
    body: schemas.LoggedModelEntries, ctx: Ctx, project: Project, model_id: str = MODEL_ID
) -> Json:
    return logged_models.update(ctx, project, model_id, tags=body.tags)


@router.delete(MODEL + "/tags/{tag_key}")
def delete_tag(
    ctx: Ctx, project: Project, model_id: str = MODEL_ID, tag_key: str = Path(max_length=250)
) -> Json:
    return logged_models.update(ctx, project, model_id, remove_tag=tag_key)


@router.post("/runs/outputs")
def log_outputs(body: schemas.LogOutputs, ctx: Ctx, project: Project) -> Json:
    return logged_models.log_outputs(ctx, project, body)
