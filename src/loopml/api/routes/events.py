"""/api/v1/events: the append-only feed of every state change."""

from __future__ import annotations

from fastapi import APIRouter, Query

from loopml.api.context import Ctx
from loopml.api.schemas import ERROR_RESPONSES, IsoDatetime, project_query
from loopml.core.types import Event, Page
from loopml.store import events

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=ERROR_RESPONSES)


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
) -> Page[Event]:
    """Events in the order they happened, filtered, a page at a time."""
    with ctx.store.session() as session:
        return events.list_(
            session, type=type, project=project, since=since, cursor=cursor, limit=limit
        )
