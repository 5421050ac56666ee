"""Errors in MLflow's shape: ``{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}``.

MLflow's client raises ``RestException`` from this body, with the same ``error_code``, so
``except MlflowException`` and checks of ``e.error_code`` in client code work unchanged. The
statuses are MLflow's own for each code (``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``).
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from loopml.core.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    LoopmlError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthenticatedError,
    ValidationError,
)

STATUS_OF = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
}

# First match wins: subclasses before their bases.
_CODES: tuple[tuple[type[LoopmlError], str], ...] = (
    (AlreadyExistsError, "RESOURCE_ALREADY_EXISTS"),
    (NotFoundError, "RESOURCE_DOES_NOT_EXIST"),
    # The gate's refusal of an alias (GateRequiredError) is one of these: the version's
    # state does not allow the move, and retrying will not help until the gate passes.
    (ConflictError, "RESOURCE_CONFLICT"),
    (ValidationError, "INVALID_PARAMETER_VALUE"),
    (BadRequestError, "INVALID_PARAMETER_VALUE"),
    (PayloadTooLargeError, "INVALID_PARAMETER_VALUE"),
    (PermissionDeniedError, "PERMISSION_DENIED"),
    # The permission check's answers (authentication on): no or a bad token, too many bad ones.
    (UnauthenticatedError, "UNAUTHENTICATED"),
    (RateLimitedError, "REQUEST_LIMIT_EXCEEDED"),
    (ServiceUnavailableError, "TEMPORARILY_UNAVAILABLE"),
)


class MlflowApiError(LoopmlError):
    """An answer with an MLflow error code of its own (``NOT_IMPLEMENTED``, ...)."""

    code = "mlflow_error"

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


def error_code_of(exc: LoopmlError) -> str:
    """The MLflow error code a loopml error answers with."""
    if isinstance(exc, MlflowApiError):
        return exc.error_code
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return "INTERNAL_ERROR"


def mlflow_error(code: str, message: str, **extra: Any) -> JSONResponse:
    """The MLflow error body with the status MLflow gives ``code``."""
    body = {"error_code": code, "message": message, **extra}
    return JSONResponse(body, status_code=STATUS_OF.get(code, 500))


def from_loopml(exc: LoopmlError) -> JSONResponse:
    """A loopml error as MLflow's error body; loopml's own code travels alongside."""
    if exc.status >= 500 and not isinstance(exc, ServiceUnavailableError | MlflowApiError):
        return mlflow_error("INTERNAL_ERROR", "internal error; the server log has the details")
    return mlflow_error(error_code_of(exc), exc.message, loopml_code=exc.code)


def from_validation(exc: RequestValidationError) -> JSONResponse:
    """A request that does not parse, as MLflow's ``INVALID_PARAMETER_VALUE``."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{loc or 'body'}: {err.get('msg', '')}")
    return mlflow_error("INVALID_PARAMETER_VALUE", "invalid request: " + "; ".join(parts))


def not_implemented(what: str) -> MlflowApiError:
    """``NOT_IMPLEMENTED`` (501) for an MLflow operation loopml does not offer."""
    return MlflowApiError(
        "NOT_IMPLEMENTED", f"{what} is not supported by loopml's MLflow API; see docs/mlflow.md"
    )
