"""/api/v1/projects/{project}/predict-batch: batch scoring of a lake table."""

from __future__ import annotations

from functools import partial

import anyio.to_thread
from fastapi import APIRouter, Body

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.core.names import validate_project_name
from loopml.core.predictions import BatchByDeployment, BatchByModel, BatchResult
from loopml.faces.context import Actor, Ctx

router = APIRouter(
    route_class=StrictJSONRoute,
    prefix="/api/v1/projects/{project}/predict-batch",
    tags=["predictions"],
    responses=ERROR_RESPONSES,
)
PROJECT = project_path("The project that owns the model, the deployment and the tables.")


@router.post("", status_code=201)
async def predict_batch(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    body: BatchByModel | BatchByDeployment = Body(
        description="The input table, the output table, and the model or the deployment."
    ),
) -> BatchResult:
    """Score a table with a model version (or what a deployment serves) and write the rows
    with their predictions to another table, as one commit.

    Runs the serving runtime in the server, without HTTP per row; the answer comes when the
    output is committed. A file is scored by ingesting it into a table first (the CLI's
    `loopml predict --input FILE` does that). With `on: ray` the table's files are read
    and scored in parallel on the Ray cluster (`worker.executor`'s, else one of the
    server's own), the output still written here as one commit.
    """
    from loopml.scoring import batch
    from loopml.scoring.ray_batch import RayTarget

    validate_project_name(project)
    score = partial(
        batch.score_table,
        ctx.store,
        ctx.artifacts,
        project,
        input=body.input,
        output=body.output,
        mode=body.mode,
        model=body.model if isinstance(body, BatchByModel) else None,
        deployment=body.deployment if isinstance(body, BatchByDeployment) else None,
        workdir=ctx.settings.home / "tmp" / "batch",
        actor=actor,
        lake_settings=ctx.settings.lake,
        ray=RayTarget.of(ctx.settings) if body.on == "ray" else None,
    )
    return await anyio.to_thread.run_sync(score)
