"""Which replica answers a request: a revision drawn by weight (the canary split), then one of
its usable replicas in turn (round robin), with replicas that just failed left out."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes


class Balancer:
    """The gateway's traffic split and round robin; its turns are per revision."""

    def __init__(self) -> None:
        self._turns: dict[tuple[str, str, int], Iterator[int]] = {}
        self._random = random.Random()  # noqa: S311 - traffic split, not security

    def pick(
        self, routes: Routes, pin: int | None, exclude: tuple[Backend, ...]
    ) -> tuple[RevisionRoute, Backend] | None:
        """A revision by weight, then one of its usable replicas in turn."""
        if len(routes.revisions) == 1 and pin is None and not exclude:
            # The common case (no canary, no pin, a first try), without the lists below.
            only = routes.revisions[0]
            backends = only.usable()
            if not backends:
                return None
            return only, backends[next(self._turn_of(routes, only)) % len(backends)]
        candidates = [
            r
            for r in routes.revisions
            if (pin is None or r.version == pin) and any(b not in exclude for b in r.usable())
        ]
        if not candidates:
            return None
        revision = (
            candidates[0]
            if len(candidates) == 1
            else self._random.choices(candidates, weights=[r.weight for r in candidates])[0]
        )
        return revision, self.turn(routes, revision, exclude)

    def turn(
        self, routes: Routes, revision: RevisionRoute, exclude: tuple[Backend, ...]
    ) -> Backend:
        backends = [b for b in revision.usable() if b not in exclude]
        return backends[next(self._turn_of(routes, revision)) % len(backends)]

    def _turn_of(self, routes: Routes, revision: RevisionRoute) -> Iterator[int]:
        key = (routes.project, routes.name, revision.number)
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = itertools.count()
        return turn
