"""The hook through which the gateway hands answers on (the prediction log connects it)."""

from __future__ import annotations

from collections.abc import Callable

from loopml.predictions.intake import Answer

AnswerHook = Callable[[Answer], None]
"""Receives every answer the prediction log takes, with its role: each successful inference
answer a client got (``primary`` or ``canary``, before the client gets it) and each shadow
answer (``shadow``, errors included); on the event loop: it must not block (queue and
return). ``PredictionLog.log_answer`` is one."""
