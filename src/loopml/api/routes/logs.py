"""/api/v1/logs: the server's own log file (uvicorn's and loopml's records), searched by
text and level; platform admins only, as it tells of every project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, LogLines, log_query, tail_query
from loopml.core.errors import NotFoundError
from loopml.core.logs import LogQuery
from loopml.faces.context import Ctx

router = APIRouter(
    route_class=StrictJSONRoute, prefix="/api/v1/logs", tags=["logs"], responses=ERROR_RESPONSES
)


@router.get("")
def platform_logs(
    ctx: Ctx, query: Annotated[LogQuery, Depends(log_query)], tail: int = tail_query()
) -> LogLines:
    """The last lines of the server's log file; with `grep` or `level`, the last of those
    that match, searched back through its rotated copies. 404 when it keeps none."""
    file = ctx.settings.server_log
    if file is None:
        raise NotFoundError(
            "this server keeps no log file (server.log_file is empty): set "
            "LOOPML_SERVER_LOG_FILE (default logs/loopml.log) and restart it",
            details={"setting": "server.log_file"},
        )
    return LogLines(lines=file.last(query, tail))
