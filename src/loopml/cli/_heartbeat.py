"""Plain progress lines for long commands whose output is not a terminal (a pipe, a CI
log), where a progress bar would be invisible or garbage: one line every ``interval_s``
seconds on stderr, so stdout (a table, JSON) stays clean."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def interval_for(budget_s: float | None) -> float:
    """About six lines over a budget, never more often than every 5 s nor rarer than 30 s."""
    if budget_s is None:
        return 15.0
    return min(max(budget_s / 6, 5.0), 30.0)


@contextmanager
def heartbeat(
    describe: Callable[[float], str], interval_s: float, *, enabled: bool = True
) -> Iterator[None]:
    """While the block runs, print ``describe(elapsed_s)`` to stderr every ``interval_s``."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(interval_s):
            print(describe(time.monotonic() - started), file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(1.0)
