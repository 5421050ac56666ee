"""Identifiers."""

from __future__ import annotations

import os
import random
import uuid


def new_id() -> str:
    """A new random identifier: 32 lowercase hex characters."""
    return uuid.uuid4().hex


class _FastIds:
    """128 random bits from a generator seeded from the OS once per process (and again in a
    forked child, so that parent and child never draw the same ids)."""

    def __init__(self) -> None:
        self.random = random.Random(os.urandom(32))  # noqa: S311 - unique, not secret

    def reseed(self) -> None:
        self.random.seed(os.urandom(32))


_fast = _FastIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fast.reseed)


def fast_id() -> str:
    """A new identifier shaped as ``new_id``'s, without a system call: for ids made per
    request on a hot path (an inference id), which must be unique but are not secrets (never
    a token or a key). ``new_id`` costs a ``getrandom`` call each time."""
    return f"{_fast.random.getrandbits(128):032x}"
