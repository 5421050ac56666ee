"""/api/v1/projects/{project}/models, model-refs and lineage; /api/v1/gc."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from loopml import registry
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.registry import (
    AliasSet,
    DescriptionUpdate,
    ModelCreate,
    TagSet,
    VersionCreate,
    alias_path,
    cursor_query,
    model_path,
    ref_path,
    tag_key_path,
    version_path,
)
from loopml.core.refs import NAME_PATTERN, ModelRef
from loopml.core.registry import (
    GcReport,
    InputLineage,
    ModelVersion,
    RegisteredModel,
    VersionLineage,
    VersionStatus,
)
from loopml.core.types import Page
from loopml.faces.context import Actor, Ctx, freeing_space

router = APIRouter(route_class=StrictJSONRoute, tags=["models"], responses=ERROR_RESPONSES)
MODELS = "/api/v1/projects/{project}/models"
MODEL = MODELS + "/{model}"
VERSION = MODEL + "/versions/{version}"
PROJECT = project_path("The project that owns the models.")
NAME = model_path()
NUMBER = version_path()
KEY = tag_key_path()
LIMIT = Query(default=100, ge=1, le=1000)


def _no_content() -> Response:
    return Response(status_code=204)


@router.post(MODELS, status_code=201)
def create_model(
    body: ModelCreate, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> RegisteredModel:
    """Create a registered model (versions are added by registering runs' models)."""
    return registry.create_model(
        ctx.store, project, body.name, description=body.description, tags=body.tags, actor=actor
    )


@router.get(MODELS)
def list_models(
    ctx: Ctx,
    project: str = PROJECT,
    limit: int = LIMIT,
    cursor: str | None = cursor_query(63, NAME_PATTERN.pattern),
) -> Page[RegisteredModel]:
    """A project's models by name, a page at a time."""
    return registry.list_models(ctx.store, project, limit=limit, cursor=cursor)


@router.get(MODEL)
def get_model(ctx: Ctx, project: str = PROJECT, model: str = NAME) -> RegisteredModel:
    """One model, with its tags, aliases and newest version number."""
    return registry.get_model(ctx.store, project, model)


@router.patch(MODEL)
def update_model(
    body: DescriptionUpdate, ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME
) -> RegisteredModel:
    """Change a model's description."""
    return registry.update_model(
        ctx.store, project, model, description=body.description, actor=actor
    )


@router.delete(MODEL, status_code=204)
def delete_model(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    force: bool = Query(default=False, description="Also delete its versions and aliases."),
) -> Response:
    """Delete a model. One with versions is refused (409) unless ``force``."""
    registry.delete_model(ctx.store, project, model, force=force, actor=actor)
    return _no_content()


@router.post(MODEL + "/versions", status_code=201)
def register_version(
    body: VersionCreate, ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME
) -> ModelVersion:
    """Register the model a run logged as the next version (the model is created if missing).

    The answer is the settled version: READY when every file matched its manifest, FAILED
    with ``status_message`` naming the file otherwise.
    """
    return registry.register_version(
        ctx.store,
        ctx.artifacts,
        project=project,
        model_name=model,
        run_id=body.run_id,
        path=body.path,
        description=body.description,
        actor=actor,
    )


@router.get(MODEL + "/versions")
def list_versions(
    ctx: Ctx,
    project: str = PROJECT,
    model: str = NAME,
    status: VersionStatus | None = Query(default=None),
    limit: int = LIMIT,
    cursor: str | None = cursor_query(9, r"^[1-9][0-9]{0,8}$"),
) -> Page[ModelVersion]:
    """A model's versions, newest first, a page at a time."""
    return registry.list_versions(
        ctx.store,
        project,
        model,
        status=status,
        limit=limit,
        cursor=int(cursor) if cursor else None,
    )


@router.get(VERSION)
def get_version(
    ctx: Ctx, project: str = PROJECT, model: str = NAME, version: int = NUMBER
) -> ModelVersion:
    """One version."""
    return registry.get_version(ctx.store, project, model, version)


@router.patch(VERSION)
def update_version(
    body: DescriptionUpdate,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
) -> ModelVersion:
    """Change a version's description."""
    return registry.update_version(
        ctx.store, project, model, version, description=body.description, actor=actor
    )


@router.delete(VERSION, status_code=204)
def delete_version(
    ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME, version: int = NUMBER
) -> Response:
    """Delete a version; refused (409) while an alias points at it."""
    registry.delete_version(ctx.store, project, model, version, actor=actor)
    return _no_content()


@router.put(MODEL + "/aliases/{alias}")
def set_alias(
    body: AliasSet,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    alias: str = alias_path(),
) -> ModelVersion:
    """Point an alias at a READY version (create or move it).

    `champion` moves only to a version whose latest gate verdict passed (409
    `gate_required` otherwise), unless `force` is set with a `reason`, which is audited.
    """
    return registry.set_alias(
        ctx.store,
        project,
        model,
        alias,
        body.version,
        actor=actor,
        force=body.force_reason is not None,
        reason=body.force_reason,
    )


@router.delete(MODEL + "/aliases/{alias}", status_code=204)
def remove_alias(
    ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME, alias: str = alias_path()
) -> Response:
    """Remove an alias."""
    registry.remove_alias(ctx.store, project, model, alias, actor=actor)
    return _no_content()


@router.put(MODEL + "/tags/{key}")
def set_model_tag(
    body: TagSet, ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME, key: str = KEY
) -> RegisteredModel:
    """Set a model's tag."""
    return registry.set_model_tag(ctx.store, project, model, key, body.value, actor=actor)


@router.delete(MODEL + "/tags/{key}", status_code=204)
def delete_model_tag(
    ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME, key: str = KEY
) -> Response:
    """Remove a model's tag."""
    registry.delete_model_tag(ctx.store, project, model, key, actor=actor)
    return _no_content()


@router.put(VERSION + "/tags/{key}")
def set_version_tag(
    body: TagSet,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
    key: str = KEY,
) -> ModelVersion:
    """Set a version's tag."""
    return registry.set_version_tag(
        ctx.store, project, model, version, key, body.value, actor=actor
    )


@router.delete(VERSION + "/tags/{key}", status_code=204)
def delete_version_tag(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
    key: str = KEY,
) -> Response:
    """Remove a version's tag."""
    registry.delete_version_tag(ctx.store, project, model, version, key, actor=actor)
    return _no_content()


@router.get(VERSION + "/lineage")
def version_lineage(
    ctx: Ctx, project: str = PROJECT, model: str = NAME, version: int = NUMBER
) -> VersionLineage:
    """Where a version came from: its run and what that run consumed."""
    return registry.version_lineage(ctx.store, project, ModelRef(name=model, version=version))


@router.get("/api/v1/projects/{project}/model-refs/{ref:path}")
def resolve_ref(ctx: Ctx, project: str = PROJECT, ref: str = ref_path()) -> ModelVersion:
    """The version a reference names: ``churn`` (newest READY), ``churn/3``, ``churn@champion``."""
    return registry.resolve_in_project(ctx.store, project, ref)


@router.get("/api/v1/projects/{project}/lineage")
def input_lineage(
    ctx: Ctx,
    project: str = PROJECT,
    input_kind: str = Query(min_length=1, max_length=50, description="Such as 'dataset'."),
    input_ref: str = Query(min_length=1, max_length=300, description="Such as a snapshot id."),
) -> InputLineage:
    """What was built from an input: the runs that consumed it and their versions."""
    return registry.input_lineage(ctx.store, project, input_kind, input_ref)


@router.post("/api/v1/gc", tags=["admin"])
def collect_garbage(
    request: Request,
    ctx: Ctx,
    actor: Actor,
    dry_run: bool = Query(default=False, description="Only report what would go."),
) -> GcReport:
    """Delete the artifacts of deleted projects and runs, and abandoned temporary files (on
    a full disk too: the disk's reserve is released)."""
    with freeing_space(request, "a gc"):
        return registry.collect_garbage(ctx.store, ctx.artifacts, dry_run=dry_run, actor=actor)
