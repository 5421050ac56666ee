"""Failed logins and token checks, counted per source: past a limit in a minute, 429."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from loopml.core.errors import RateLimitedError


class FailureLimiter:
    """At most ``limit`` failures per ``window_s`` seconds from one source, in memory.

    Each server process counts its own; behind several replicas the limit is per replica.
    """

    def __init__(
        self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def check(self, source: str) -> None:
        """Raise ``RateLimitedError`` when ``source`` is over its limit right now."""
        with self._lock:
            recent = self._recent(source)
            if len(recent) >= self.limit:
                retry = max(1, int(recent[0] + self.window_s - self._clock()) + 1)
                raise RateLimitedError(
                    f"too many failed attempts from {source}: wait {retry} s and try again",
                    details={"retry_after_s": retry},
                )

    def fail(self, source: str) -> None:
        """Count one failure of ``source``."""
        with self._lock:
            self._recent(source).append(self._clock())
            if len(self._failures) > 10_000:  # bound the memory a spray of sources can take
                self._failures = {k: v for k, v in self._failures.items() if v}

    def _recent(self, source: str) -> deque[float]:
        window = self._failures.setdefault(source, deque())
        cutoff = self._clock() - self.window_s
        while window and window[0] < cutoff:
            window.popleft()
        return window
