"""The hooks through which the gateway hands answers on (the prediction log connects them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy comes with it: a gateway process never loads it
    from loopml.predictions.sink import ShadowAnswer


ShadowHook = Callable[["ShadowAnswer"], None]
"""Receives every shadow answer, on the event loop: it must not block (queue and return)."""

AnswerHook = Callable[["ShadowAnswer", str], None]
"""Receives every successful inference answer the client got (as a ``ShadowAnswer`` whose
``revision`` is ``primary_revision``) and the revision's role, on the event loop, before the
answer is sent: it must not block (queue and return). The prediction log connects it."""
