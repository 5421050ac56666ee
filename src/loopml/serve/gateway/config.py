"""The gateway's settings and the hooks through which it hands answers on (the prediction log
connects them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from loopml.core.errors import LoopmlError
from loopml.settings import GatewaySettings

if TYPE_CHECKING:  # numpy comes with it: a gateway process never loads it
    from loopml.predictions.sink import ShadowAnswer


class GatewayTimeoutError(LoopmlError):
    """A replica took longer than the gateway's timeout to answer."""

    status = 504
    code = "upstream_timeout"


ShadowHook = Callable[["ShadowAnswer"], None]
"""Receives every shadow answer, on the event loop: it must not block (queue and return)."""

AnswerHook = Callable[["ShadowAnswer", str], None]
"""Receives every successful inference answer the client got (as a ``ShadowAnswer`` whose
``revision`` is ``primary_revision``) and the revision's role, on the event loop, before the
answer is sent: it must not block (queue and return). The prediction log connects it."""


GatewayConfig = GatewaySettings
"""Timeouts and bounds of the gateway: the ``gateway`` section of the settings tree
(``LOOPML_GATEWAY_*``, ``[gateway]`` in loopml.toml); see docs/configuration.md."""
