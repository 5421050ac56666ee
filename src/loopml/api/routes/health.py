"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from loopml._version import __version__
from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, HealthReport
from loopml.core.errors import LoopmlError
from loopml.faces.context import Running, RunningParts

router = APIRouter(
    route_class=StrictJSONRoute, prefix="/api/v1/health", tags=["health"], responses=ERROR_RESPONSES
)


def _readiness(running: Running) -> tuple[int, HealthReport]:
    try:
        running.context.store.check()
    except LoopmlError as exc:
        report = HealthReport(
            status="unavailable", version=__version__, checks={"database": exc.message}
        )
        return 503, report
    running.answered.set()  # ``loopml up`` starts what health does not need from now on
    return 200, HealthReport(status="ok", version=__version__, checks={"database": "ok"})


@router.get("", response_model=HealthReport, responses={503: {"model": HealthReport}})
def health(running: RunningParts) -> JSONResponse:
    """Live and ready: 200 when the database answers and its schema is current, else 503."""
    status, report = _readiness(running)
    return JSONResponse(report.model_dump(), status_code=status)


@router.get("/live", response_model=HealthReport)
def live() -> HealthReport:
    """Liveness only: the process answers. Never touches the database."""
    return HealthReport(status="ok", version=__version__, checks={})


@router.get("/ready", response_model=HealthReport, responses={503: {"model": HealthReport}})
def ready(running: RunningParts) -> JSONResponse:
    """Readiness: same as ``GET /api/v1/health``."""
    status, report = _readiness(running)
    return JSONResponse(report.model_dump(), status_code=status)
