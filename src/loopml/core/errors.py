"""The one error hierarchy of loopml.

Every error a user can cause or meet is a ``LoopmlError`` subclass that carries its HTTP
status and a stable ``code``. ``platform/errors.py`` turns any of them into the same JSON body
(``{"error": {"code", "message", "details"}}``) and ``client/`` rebuilds the same class from
that body, so ``except NotFoundError`` works the same in-process and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar
from urllib.parse import quote, unquote

# Every error response also carries its code and message in these headers, so that an error
# answer without a body (to a HEAD request) still rebuilds as the right class.
ERROR_CODE_HEADER = "X-Loopml-Error-Code"
ERROR_MESSAGE_HEADER = "X-Loopml-Error-Message"


class LoopmlError(Exception):
    """Base of every loopml error.

    Attributes:
        status: the HTTP status the API answers with.
        code: a stable, machine-readable name for the error kind.
        message: what was expected, what came, and how to fix it.
        details: optional structured context (field names, limits, ...).
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the stable JSON body the API returns."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequestError(LoopmlError):
    """The request is malformed in a way the caller must fix."""

    status = 400
    code = "bad_request"


class InvalidPathError(BadRequestError):
    """An artifact key or path was refused (traversal, absolute, symlink, bad characters)."""

    code = "invalid_path"


class ValidationError(LoopmlError):
    """A value failed validation (a name, a field, a body)."""

    status = 422
    code = "validation_error"


def invalid_request(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str] = ()
) -> ValidationError:
    """A body's field errors (pydantic's ``errors()``, each ``loc``, ``msg``, ``type``) as the
    one ``ValidationError`` the API answers 422 with: the first 20 in the details, the first
    three in the message. ``prefix`` goes before each location (the API's ``body``), so a
    body checked before it is sent reads as the API's answer to it.
    """
    found = [
        {
            "loc": [*prefix, *(str(part) for part in err.get("loc", ()))],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in islice(errors, 20)
    ]
    summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found[:3])
    return ValidationError(f"invalid request: {summary}", details={"errors": found})


class NotFoundError(LoopmlError):
    """The named thing does not exist."""

    status = 404
    code = "not_found"


class ConflictError(LoopmlError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class AlreadyExistsError(ConflictError):
    """Something with that name already exists."""

    code = "already_exists"


class GateRequiredError(ConflictError):
    """A promotion the gate refuses: the version's latest verdict failed, or it has none."""

    code = "gate_required"


class ArtifactIntegrityError(ConflictError):
    """Stored bytes do not match their recorded hash, size or file list (tampering, corruption)."""

    code = "integrity_error"


class UnsafeArtifactError(ValidationError):
    """An artifact was refused because loading it could run code (pickle, an untrusted type)."""

    code = "unsafe_artifact"


class UserCodeError(LoopmlError):
    """The user's own code (a training entrypoint, a pipeline step) raised;
    ``details['traceback']`` is its traceback."""

    status = 422
    code = "user_code_error"


class PermissionDeniedError(LoopmlError):
    """The caller may not do this."""

    status = 403
    code = "permission_denied"


class UnauthenticatedError(LoopmlError):
    """No credentials, or credentials that are not valid (unknown, expired, revoked)."""

    status = 401
    code = "unauthenticated"


class RateLimitedError(LoopmlError):
    """Too many failed attempts from this source; ``details['retry_after_s']`` says when."""

    status = 429
    code = "rate_limited"


class PayloadTooLargeError(LoopmlError):
    """The request body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(LoopmlError):
    """The request body's Content-Type is not one this route accepts."""

    status = 415
    code = "unsupported_media_type"


class QueryTimeoutError(LoopmlError):
    """A query ran past its time limit and was stopped; narrow it or allow more time.

    422, not 408 or 504: the request arrived whole and the server is healthy; it is this
    query, with this time limit, that the caller must change (and no proxy retries a 422).
    """

    status = 422
    code = "query_timeout"


class ServiceUnavailableError(LoopmlError):
    """A backing service (database, object store) is unreachable; retrying may succeed."""

    status = 503
    code = "service_unavailable"


class ReplyTimeoutError(ServiceUnavailableError):
    """The server took the request but did not answer within the client's timeout. Raised
    by the SDK, never sent by a server: the server is up, and the call may still finish
    there, so the caller checks before it sends it again (or allows more time)."""

    status = 504
    code = "reply_timeout"


class DiskFullError(ServiceUnavailableError):
    """A write was refused because the disk holding it is full (or over its quota); nothing
    was written. Build one with ``core.disk.disk_full`` so the message names what and where.

    507 Insufficient Storage, not 503: the platform is up and keeps serving, and a retry
    fails until someone frees space, so clients must not retry it by themselves
    (``details['retryable']`` is false).
    """

    status = 507
    code = "disk_full"


class ConfigurationError(LoopmlError):
    """loopml's own configuration is invalid or incomplete."""

    status = 500
    code = "configuration_error"


def error_headers(code: str, message: str) -> dict[str, str]:
    """The headers that carry an error's code and (percent-encoded, bounded) message."""
    return {ERROR_CODE_HEADER: code, ERROR_MESSAGE_HEADER: quote(message[:1000], safe=" ")}


def _all_subclasses(cls: type[LoopmlError]) -> list[type[LoopmlError]]:
    found: list[type[LoopmlError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def error_class_for(code: str) -> type[LoopmlError]:
    """The error class whose ``code`` is ``code``; ``LoopmlError`` when none matches.

    Later packages define more subclasses; they are found as long as they are imported.
    """
    for cls in _all_subclasses(LoopmlError):
        if cls.code == code:
            return cls
    return LoopmlError


def error_from_headers(status: int, headers: Any) -> LoopmlError | None:
    """Rebuild an error from its headers (see ``error_headers``); ``None`` if they are absent."""
    code = headers.get(ERROR_CODE_HEADER)
    if not code:
        return None
    message = unquote(headers.get(ERROR_MESSAGE_HEADER, "")) or f"HTTP {status}"
    return error_class_for(code)(message)


def error_from_body(status: int, body: Any) -> LoopmlError:
    """Rebuild the error the server raised from its JSON body (see ``LoopmlError.to_dict``)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("code"), str):
        return LoopmlError(
            f"unexpected response (HTTP {status}): {str(body)[:500]}", details={"status": status}
        )
    cls = error_class_for(err["code"])
    details = err.get("details") if isinstance(err.get("details"), dict) else {}
    return cls(str(err.get("message", "")), details=details)


class WroteWhileReadingError(RuntimeError):
    """A write inside ``MetadataStore.reading()``, which the database refused: not an
    outage, and not the caller's fault; the reader may run again outside ``reading()``."""
