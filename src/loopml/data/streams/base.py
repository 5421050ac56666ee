"""The interface every stream source implements: fetch, ack, and where the broker stands.

A source hands out messages with their position (``loopml.core.streams.Position``) and
acknowledges them once their commit is recorded. Decoding, validation, de-duplication,
batching and committing live above it (``loopml.data.streams.consumer``), so a backend is a
thin adapter over its client library: NATS JetStream and Redis Streams today, Kafka later
as one more module under ``backends/``.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import ConfigurationError
from loopml.core.streams import BrokerStream, NatsSource, Position, RedisSource, Stream


def consumer_name(stream: Stream) -> str:
    """The broker-side durable consumer (or group) of a stream: one per stream id, so a
    stream deleted and created again starts afresh."""
    return f"loopml-{stream.id}"


@dataclass(slots=True)
class Message:
    """One message as fetched.

    Attributes:
        id: its position in the stream; the same on every redelivery.
        data: its body (a JSON object is expected).
        token: what the source needs to acknowledge it.
        subject: the subject it was published on (NATS), or the stream key (Redis).
    """

    id: Position
    data: bytes
    token: Any
    subject: str = ""


class StreamSource(ABC):
    """A broker subscription that redelivers what is not acknowledged.

    The contract every backend passes (``tests/contract/test_stream_source.py``): a new
    consumer name reads from the start; messages come back with the same ``id`` until
    acked, to a restarted source or once held past ``redeliver_s``, and never before that
    to another source of the same name; an acked message is never delivered again; a
    source reopened under the same name resumes where the acks left off; any body is
    delivered as it is; ``close`` may be called twice; ``open`` on an unreachable server
    raises ``ServiceUnavailableError`` within seconds.
    """

    @abstractmethod
    async def open(self) -> None:
        """Connect and create (or bind to) the durable consumer."""

    @abstractmethod
    async def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first;
        an empty list when none came."""

    @abstractmethod
    async def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge ``messages``; returns once the broker has them."""

    @abstractmethod
    async def floor(self) -> Position | None:
        """A position at or below which no message will ever be delivered again (all are
        acked), ``None`` when unknown; refreshes ``lag`` too."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; unacked messages are redelivered to the next consumer."""

    lag: int | None = None
    """Messages in the broker not yet acknowledged, as of the last ``floor``."""

    def id_text(self, position: Position) -> str:
        """A message id as the broker's tools show it."""
        return f"{position[0]}-{position[1]}"


_BACKENDS = {
    "nats": "loopml.data.streams.backends.nats:NatsStreamSource",
    "redis": "loopml.data.streams.backends.redis:RedisStreamSource",
}


def _backend(kind: str) -> tuple[Any, str]:
    module_name, _, class_name = _BACKENDS[kind].partition(":")
    try:
        return importlib.import_module(module_name), class_name
    except ImportError as exc:
        raise ConfigurationError(
            f"the {kind} stream backend needs its client library ({exc.name}): "
            "pip install 'nats-py' or 'redis'"
        ) from exc


def open_source(
    config: NatsSource | RedisSource, consumer: str, redeliver_s: float = 60.0
) -> StreamSource:
    """The source for ``config``, its durable consumer (or group) named ``consumer``, which
    redelivers what is not acked within ``redeliver_s``; the backend's client library is
    imported only now.

    Raises:
        ConfigurationError: the client library is not installed.
    """
    module, class_name = _backend(config.type)
    source: StreamSource = getattr(module, class_name)(config, consumer, redeliver_s)
    return source


def ensure_broker_stream(config: NatsSource | RedisSource, name: str) -> BrokerStream | None:
    """Make sure the broker holds what ``config`` reads: for NATS, the JetStream stream
    capturing the subject (made as ``name`` when none does); ``None`` for Redis, whose key
    the consumer group creates.

    Raises:
        ConfigurationError: the client library is not installed.
        ServiceUnavailableError: the broker cannot be reached.
        ConflictError: the broker refused the new stream.
    """
    if config.type != "nats":
        return None
    module, _ = _backend(config.type)
    made: BrokerStream = asyncio.run(module.ensure_stream(config, name))
    return made


def remove_broker_consumer(stream: Stream) -> bool:
    """Remove what the broker keeps for ``stream``'s consumer once the stream is deleted:
    the JetStream durable consumer (which would otherwise hold the stream's messages for
    ever under an interest or work-queue retention, and is listed for ever besides), or the
    Redis consumer group. The broker's messages stay. ``False`` when there was none.

    Raises:
        ConfigurationError: the client library is not installed.
        ServiceUnavailableError: the broker cannot be reached.
    """
    config = stream.config.source
    module, _ = _backend(config.type)
    removed: bool = asyncio.run(module.remove_consumer(config, consumer_name(stream)))
    return removed
