"""MLflow's model registry endpoints: registered models, versions, tags and aliases.

Each route is one call into ``api.mlflow.registry``. DELETE requests carry a JSON body, as
MLflow's client sends them; GET requests carry query parameters.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from loopml.api.mlflow import registry
from loopml.api.mlflow._route import MlflowActor, MlflowRoute, Project
from loopml.api.mlflow.schemas import (
    AliasBody,
    LatestVersions,
    ModelBody,
    ModelName,
    ModelRename,
    ModelTag,
    RegistrySearch,
    StageBody,
    VersionBody,
    VersionRef,
    VersionTag,
    VersionUpdate,
)
from loopml.faces.context import Ctx

router = APIRouter(route_class=MlflowRoute)
Json = dict[str, Any]
NAME = Query(max_length=300)
MAX_RESULTS = Query(default=100, ge=1, le=50_000)
TOKEN = Query(default=None, max_length=300)
FILTER = Query(default=None, max_length=1000)
ORDER_BY = Query(default=[], max_length=10)


def _search(
    filter: str | None = FILTER,
    max_results: int = MAX_RESULTS,
    order_by: list[str] = ORDER_BY,
    page_token: str | None = TOKEN,
) -> RegistrySearch:
    return RegistrySearch(
        filter=filter, order_by=order_by, max_results=max_results, page_token=page_token
    )


Search = Annotated[RegistrySearch, Depends(_search)]


@router.post("/registered-models/create")
def create_model(body: ModelBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    tags = {t.key: t.value for t in body.tags}
    return registry.create_model(ctx, project, body.name, tags, body.description, actor)


@router.get("/registered-models/get")
def get_model(ctx: Ctx, project: Project, name: str = NAME) -> Json:
    return registry.get_model(ctx, project, name)


@router.patch("/registered-models/update")
def update_model(body: ModelBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.update_model(ctx, project, body.name, body.description, actor)


@router.delete("/registered-models/delete")
def delete_model(body: ModelName, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.delete_model(ctx, project, body.name, actor)


@router.get("/registered-models/search")
def search_models(ctx: Ctx, project: Project, search: Search) -> Json:
    return registry.search_models(ctx, project, search)


@router.post("/registered-models/rename")
def rename_model(body: ModelRename, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.rename_model(ctx, project, body.name, body.new_name, actor)


@router.post("/registered-models/get-latest-versions")
def latest_versions(body: LatestVersions, ctx: Ctx, project: Project) -> Json:
    return registry.latest_versions(ctx, project, body.name, body.stages)


@router.get("/registered-models/get-latest-versions")
def latest_versions_get(
    ctx: Ctx, project: Project, name: str = NAME, stages: list[str] = Query(default=[])
) -> Json:
    return registry.latest_versions(ctx, project, name, stages)


@router.post("/registered-models/set-tag")
def set_model_tag(body: ModelTag, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.set_model_tag(ctx, project, body.name, body.key, body.value, actor)


@router.delete("/registered-models/delete-tag")
def delete_model_tag(body: ModelTag, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.set_model_tag(ctx, project, body.name, body.key, None, actor)


@router.post("/registered-models/alias")
def set_alias(body: AliasBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.set_alias(ctx, project, body.name, body.alias, body.version, actor)


@router.delete("/registered-models/alias")
def delete_alias(body: AliasBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.delete_alias(ctx, project, body.name, body.alias, actor)


@router.get("/registered-models/alias")
def version_by_alias(
    ctx: Ctx, project: Project, name: str = NAME, alias: str = Query(max_length=300)
) -> Json:
    return registry.version_by_alias(ctx, project, name, alias)


@router.post("/model-versions/create")
def create_version(body: VersionBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    tags = {t.key: t.value for t in body.tags}
    return registry.create_version(
        ctx, project, body.name, body.source, body.run_id, body.description, tags, actor
    )


@router.get("/model-versions/get")
def get_version(
    ctx: Ctx, project: Project, name: str = NAME, version: str = Query(max_length=20)
) -> Json:
    return registry.get_version(ctx, project, name, version)


@router.patch("/model-versions/update")
def update_version(body: VersionUpdate, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.update_version(ctx, project, body.name, body.version, body.description, actor)


@router.delete("/model-versions/delete")
def delete_version(body: VersionRef, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.delete_version(ctx, project, body.name, body.version, actor)


@router.get("/model-versions/search")
def search_versions(ctx: Ctx, project: Project, search: Search) -> Json:
    return registry.search_versions(ctx, project, search)


@router.get("/model-versions/get-download-uri")
def download_uri(
    ctx: Ctx, project: Project, name: str = NAME, version: str = Query(max_length=20)
) -> Json:
    return registry.download_uri(ctx, project, name, version)


@router.post("/model-versions/set-tag")
def set_version_tag(body: VersionTag, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.set_version_tag(
        ctx, project, body.name, body.version, body.key, body.value, actor
    )


@router.delete("/model-versions/delete-tag")
def delete_version_tag(body: VersionTag, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.set_version_tag(ctx, project, body.name, body.version, body.key, None, actor)


@router.post("/model-versions/transition-stage")
def transition_stage(body: StageBody, ctx: Ctx, project: Project, actor: MlflowActor) -> Json:
    return registry.transition_stage(ctx, project, body, actor)
