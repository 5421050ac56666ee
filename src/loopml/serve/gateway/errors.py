"""The gateway's own errors (the rest come from ``loopml.core.errors``)."""

from __future__ import annotations

from loopml.core.errors import LoopmlError


class GatewayTimeoutError(LoopmlError):
    """A replica took longer than the gateway's timeout to answer."""

    status = 504
    code = "upstream_timeout"
