"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from loopml._version import __version__
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, HealthReport
from loopml.core.errors import LoopmlError
from loopml.web.context import Ctx

router = APIRouter(
    route_class=StrictJSONRoute, prefix="/api/v1/health", tags=["health"], responses=ERROR_RESPONSES
)


def _readiness(ctx: Ctx) -> tuple[int, HealthReport]:
    try:
        ctx.store.check()
    except LoopmlError as exc:
        report = HealthReport(
            status="unavailable", version=__version__, checks={"database": exc.message}
        )
        return 503, report
    return 200, HealthReport(status="ok", version=__version__, checks={"database": "ok"})


@router.get("", response_model=HealthReport, responses={503: {"model": HealthReport}})
def health(ctx: Ctx) -> JSONResponse:
    """Live and ready: 200 when the database answers and its schema is current, else 503."""
    status, report = _readiness(ctx)
    return JSONResponse(report.model_dump(), status_code=status)


@router.get("/live", response_model=HealthReport)
def live() -> HealthReport:
    """Liveness only: the process answers. Never touches the database."""
    return HealthReport(status="ok", version=__version__, checks={})


@router.get("/ready", response_model=HealthReport, responses={503: {"model": HealthReport}})
def ready(ctx: Ctx) -> JSONResponse:
    """Readiness: same as ``GET /api/v1/health``."""
    status, report = _readiness(ctx)
    return JSONResponse(report.model_dump(), status_code=status)
