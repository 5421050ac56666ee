"""Checked tokens, remembered for a few seconds: the serving path's check without a database
round trip per request.

A token is looked up (``service.authenticate``) at most once per ``ttl_s`` per process, so a
revoked or expired token is refused at most ``ttl_s`` (5 s) after its revocation or expiry.
Only successful checks are cached, keyed by the token itself (hashing it on every request
cost about 9 us of the check's 35 us, measured by ``bench/auth_check.py``); the entries live
in the server's memory only, where the tokens pass anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loopml.auth import service
from loopml.core.auth import Principal
from loopml.store import MetadataStore


class TokenCache:
    """``principal(token)`` with a short memory (see the module docstring)."""

    def __init__(
        self,
        store: MetadataStore,
        key: bytes,
        *,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key = key
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal, float]] = {}

    def now(self) -> float:
        """This cache's clock (the time ``entry`` deadlines are in)."""
        return self._clock()

    def cached(self, token: str) -> Principal | None:
        """The principal remembered for ``token``, if it is still fresh."""
        entry = self.entry(token)
        return entry[0] if entry else None

    def entry(self, token: str) -> tuple[Principal, float] | None:
        """The principal remembered for ``token`` and until when (this cache's clock)."""
        with self._lock:
            entry = self._entries.get(token)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry

    def principal(self, token: str) -> Principal:
        """The caller ``token`` stands for: from memory, or checked against the store.

        Raises:
            UnauthenticatedError: as ``service.authenticate``.
        """
        remembered = self.cached(token)
        if remembered is not None:
            return remembered
        caller = service.authenticate(self._store, self._key, token)
        with self._lock:
            if len(self._entries) >= self._max:
                now = self._clock()
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self._max:
                    self._entries.clear()
            self._entries[token] = (caller, self._clock() + self.ttl_s)
        return caller
