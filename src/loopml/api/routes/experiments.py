"""/api/v1/projects/{project}/experiments"""

from __future__ import annotations

from fastapi import APIRouter, Query

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.tracking import ExperimentCreate, experiment_path
from loopml.core.runs import EXPERIMENT_NAME_PATTERN, Experiment
from loopml.core.types import Page
from loopml.faces.context import Actor, Ctx
from loopml.train import tracking

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/api/v1/projects/{project}/experiments",
    tags=["experiments"],
    responses=ERROR_RESPONSES,
)
PROJECT = project_path("The project that owns the experiments.")


@router.post("", status_code=201)
def create_experiment(
    body: ExperimentCreate, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> Experiment:
    """Create an experiment."""
    return tracking.create_experiment(
        ctx.store, project, body.name, description=body.description, actor=actor
    )


@router.get("")
def list_experiments(
    ctx: Ctx,
    project: str = PROJECT,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(
        default=None,
        max_length=200,
        description="The next_cursor of the previous page.",
        json_schema_extra={"pattern": EXPERIMENT_NAME_PATTERN},
    ),
) -> Page[Experiment]:
    """A project's experiments by name, a page at a time."""
    return tracking.list_experiments(ctx.store, project, limit=limit, cursor=cursor)


@router.get("/{name}")
def get_experiment(ctx: Ctx, project: str = PROJECT, name: str = experiment_path()) -> Experiment:
    """One experiment."""
    return tracking.get_experiment(ctx.store, project, name)
