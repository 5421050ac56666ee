"""Stream sources under /api/v1/projects/{project}/streams: NATS JetStream subjects, Redis
streams and Kafka topics consumed into lake tables by the server's supervisor."""

from __future__ import annotations

from fastapi import APIRouter

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.streams import StreamCreate, StreamList, StreamsApply, stream_path
from loopml.core.streams import Stream, StreamCreated, StreamDeleted, StreamsApplied
from loopml.data.streams import service as svc
from loopml.faces.context import Actor, Ctx

STREAMS = "/api/v1/projects/{project}/streams"
router = APIRouter(route_class=StrictJSONRoute, tags=["streams"], responses=ERROR_RESPONSES)
PROJECT = project_path("The project that owns the streams.")
NAME = stream_path()


@router.post(STREAMS, status_code=201)
def create_stream(
    body: StreamCreate, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> StreamCreated:
    """Define a stream: its consumer starts within seconds, reads the subject or key from
    its start, and commits micro-batches to `table` (bad messages to `dead_letter`). With
    `create_stream`, the JetStream stream is made first when none captures the subject."""
    return svc.create(ctx.store, project, actor=actor, **body.model_dump())


@router.post(STREAMS + "/apply")
def apply_streams(
    body: StreamsApply, ctx: Ctx, actor: Actor, project: str = PROJECT
) -> StreamsApplied:
    """Create or update the streams a YAML (or JSON) file defines, all or none: each is
    `created`, `updated` (its consumer commits what it holds and restarts with the new
    definition) or `unchanged`. A stream's source, table and `redeliver_s` cannot change
    (409)."""
    return svc.apply(ctx.store, project, body.spec, actor=actor)


@router.get(STREAMS)
def list_streams(ctx: Ctx, project: str = PROJECT) -> StreamList:
    """A project's streams, with their consumers' status, lag, rate and errors."""
    return StreamList(items=svc.list_streams(ctx.store, project))


@router.get(STREAMS + "/{name}")
def get_stream(ctx: Ctx, project: str = PROJECT, name: str = NAME) -> Stream:
    """One stream, with its consumer's last report."""
    return svc.get(ctx.store, project, name)


@router.post(STREAMS + "/{name}/pause")
def pause_stream(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Stream:
    """Pause: the consumer commits what it holds and stops fetching; the broker keeps the
    rest."""
    return svc.set_paused(ctx.store, project, name, True, actor=actor)


@router.post(STREAMS + "/{name}/resume")
def resume_stream(ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME) -> Stream:
    """Resume a paused stream where its acks left off."""
    return svc.set_paused(ctx.store, project, name, False, actor=actor)


@router.delete(STREAMS + "/{name}")
def delete_stream(
    ctx: Ctx, actor: Actor, project: str = PROJECT, name: str = NAME
) -> StreamDeleted:
    """Delete the definition and its consumer on the broker (``broker_consumer`` says what
    became of it; an unreachable broker leaves it, and the definition is deleted all the
    same); the running consumer stops, the tables and the broker's messages stay."""
    return svc.delete(ctx.store, project, name, actor=actor, secrets=ctx.settings.streams)
