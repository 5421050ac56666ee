"""Waiting for a condition in a test, the one way the suite does it.

A test that waits on another thread, process or server asks ``eventually`` for the thing it
waits for, with a generous deadline: a loaded machine only makes it return later, it never
changes the verdict. On time-out the error says what was awaited, for how long, and what was
seen last, so a failure reads as a finding rather than as "timed out".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_SHOWN_CHARS = 2000


def _shortened(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else "..." + text[-_SHOWN_CHARS:]


def eventually(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.05,
    describe: Callable[[], object] | None = None,
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    An exception from ``condition`` counts as "not yet" and is kept as the last thing seen.
    After ``timeout_s`` an ``AssertionError`` names ``what``, the time waited, the last value
    or exception, and ``describe()`` (a server's log tail, say) when given.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        error: Exception | None = None
        value: T | None = None
        try:
            value = condition()
        except Exception as exc:  # the thing awaited may fail until it is ready
            error = exc
        else:
            if value:
                return value
        now = time.monotonic()
        if now >= deadline:
            seen = f"last exception: {error!r}" if error else f"last value: {value!r}"
            message = f"waited {now - started:.1f} s (limit {timeout_s:g} s) for {what}; {seen}"
            if describe is not None:
                message += f"\n{describe()}"
            raise AssertionError(_shortened(message)) from error
        time.sleep(min(interval_s, deadline - now))


REQUEST_GUARD_S = 120.0
"""The timeout of a test's own HTTP request: a hang guard, not a check. httpx's default of
5 s decides a verdict on a loaded machine (a server packaging a model, or a test run beside
it, can take longer to answer), so a test never leaves it in place (tests/unit/
test_architecture.py holds that)."""
