"""/api/v1/events: the append-only feed of every state change."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from loopml import events
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, IsoDatetime, project_query
from loopml.core.types import Event, Page
from loopml.faces.context import Ctx

router = APIRouter(
    route_class=StrictJSONRoute, prefix="/api/v1/events", tags=["events"], responses=ERROR_RESPONSES
)


@router.get("")
def list_events(
    ctx: Ctx,
    type: str | None = Query(
        default=None,
        max_length=100,
        description="Exact type, or a prefix ending in '.*'.",
        json_schema_extra={"pattern": r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$"},
    ),
    project: str | None = project_query("Only this project's events."),
    since: IsoDatetime | None = Query(default=None, description="ISO 8601 time, inclusive."),
    cursor: str | None = Query(
        default=None,
        max_length=19,
        pattern=r"^[0-9]+$",
        description="The next_cursor of the previous page.",
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    actor: str | None = Query(
        default=None,
        min_length=1,
        max_length=200,
        description="Only this actor's events (`user:ada` also matches its tokens).",
    ),
    order: Literal["asc", "desc"] = Query(
        default="asc", description="asc: oldest first (the default); desc: newest first."
    ),
) -> Page[Event]:
    """Events in the order they happened (or newest first), filtered, a page at a time."""
    return events.list_events(
        ctx.store,
        type=type,
        project=project,
        since=since,
        cursor=cursor,
        limit=limit,
        actor=actor,
        newest_first=order == "desc",
    )
