"""The online store's interface: each entity's newest feature values, by key.

A backend stores opaque rows — an encoded entity key, the event time in microseconds and
the encoded values — under a namespace (one per view of a project). Encoding, chunking and
the watermark live above the interface (``online/__init__.py``, ``materialize``), so a
backend stays short. The one rule every backend keeps: a write never replaces a row with a
newer event time (an equal one may be rewritten, so writing the same batch twice is a
no-op). ``tests/contract/test_online_store.py`` holds every backend to it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OnlineRow:
    """One entity's values: ``entity`` is the encoded key, ``value`` the encoded values."""

    entity: str
    event_us: int
    value: bytes


class OnlineStore(abc.ABC):
    """Where online reads come from (``SqliteOnlineStore``, ``RedisOnlineStore``)."""

    @abc.abstractmethod
    def write_batch(self, namespace: str, rows: Sequence[OnlineRow]) -> None:
        """Upsert ``rows``; a row whose stored ``event_us`` is newer is left alone."""

    @abc.abstractmethod
    def read_batch(self, namespace: str, entities: Sequence[str]) -> list[OnlineRow | None]:
        """The stored row of each entity, in order; ``None`` where there is none."""

    @abc.abstractmethod
    def delete_namespace(self, namespace: str) -> None:
        """Forget every row of ``namespace`` (a view whose version changed)."""

    @abc.abstractmethod
    def first_key(self) -> str | None:
        """Some key the store holds, in its own spelling (``None`` when it is empty): what a
        restore names when it refuses to write over a store in use."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
