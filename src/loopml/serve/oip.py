"""Open Inference Protocol (KServe V2) conventions shared by the model server, the gateway and
the platform's request guard: which paths are V2 paths, the error body they answer with, and
which client request ids may serve as inference ids.

The protocol's error body is ``{"error": "<message>"}``: clients (tritonclient, KServe's
own) read ``error`` as a string and fail on anything else. loopml's own routes answer
``{"error": {"code", "message", "details"}}``; on V2 paths the message takes ``error`` and
the code and details move beside it (``{"error": "...", "code": "...", "details": {...}}``),
so nothing is lost and the ``X-Loopml-Error-Code`` header is the same either way.
"""

from __future__ import annotations

import re
from typing import Any

from loopml.core.errors import LoopmlError

# A client's id is used only if it is short and plain: it ends up in logs, headers and the
# prediction log, so no control characters, spaces, quotes or separators.
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def safe_id(value: object) -> str | None:
    """``value`` if it may serve as an inference id, else ``None``."""
    return value if isinstance(value, str) and SAFE_ID.fullmatch(value) else None


class MethodNotAllowedError(LoopmlError):
    """The path exists, but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


def is_v2_path(path: str) -> bool:
    """Whether ``path`` is an Open Inference Protocol path: ``/v2[/...]`` on a model server
    or the gateway, or ``[/projects/{p}]/deployments/{name}/v2[/...]`` on the gateway."""
    if path == "/v2" or path.startswith("/v2/"):
        return True
    parts = path.split("/", 6)
    if len(parts) > 3 and parts[1] == "deployments":
        return parts[3] == "v2"
    return (
        len(parts) > 5
        and parts[1] == "projects"
        and parts[3] == "deployments"
        and (parts[5] == "v2")
    )


def error_body(error: LoopmlError) -> dict[str, Any]:
    """The V2 error body for ``error`` (see the module docstring)."""
    return {"error": error.message, "code": error.code, "details": error.details}


def error_body_for(path: str, error: LoopmlError) -> dict[str, Any]:
    """The V2 body on a V2 path, else the platform's own (``LoopmlError.to_dict``)."""
    return error_body(error) if is_v2_path(path) else error.to_dict()
