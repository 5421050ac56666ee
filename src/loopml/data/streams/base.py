"""The interface every stream source implements: fetch, ack, and where the broker stands.

A source hands out messages with their position (``loopml.core.streams.Position``) and
acknowledges them once their commit is recorded. Decoding, validation, de-duplication,
batching and committing live above it (``loopml.data.streams.consumer``), so a backend is a
thin adapter over its client library: NATS JetStream, Redis Streams and Kafka, one module
each under ``backends/``.
"""

from __future__ import annotations

import asyncio
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopml.core.errors import ConfigurationError
from loopml.core.stream_sources import AnySource
from loopml.core.streams import BrokerStream, Floor, Position, Stream
from loopml.settings import StreamsSettings


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
        subject: the subject it was published on (NATS), the stream key (Redis), or the
            topic (Kafka).
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
    async def floor(self) -> Floor | None:
        """A position at or below which no message will ever be delivered again (all are
        acked), or one per partition where the stream has several (Kafka); ``None`` when
        unknown. Refreshes ``lag`` too."""

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
    "kafka": "loopml.data.streams.backends.kafka:KafkaStreamSource",
}
_CLIENTS = {"nats": "nats-py", "redis": "redis", "kafka": "confluent-kafka"}


def _backend(kind: str) -> tuple[Any, str]:
    module_name, _, class_name = _BACKENDS[kind].partition(":")
    try:
        return importlib.import_module(module_name), class_name
    except ImportError as exc:
        raise ConfigurationError(
            f"the {kind} stream backend needs its client library ({exc.name}): "
            f"pip install '{_CLIENTS[kind]}'"
        ) from exc


def _secrets(config: AnySource, settings: StreamsSettings | None) -> dict[str, Any]:
    """The server's secrets a backend takes besides ``config`` (which stores none)."""
    if config.type == "kafka" and settings is not None:
        return {"sasl_password": settings.kafka_sasl_password}
    return {}


def open_source(
    config: AnySource,
    consumer: str,
    redeliver_s: float = 60.0,
    settings: StreamsSettings | None = None,
) -> StreamSource:
    """The source for ``config``, its durable consumer (or group) named ``consumer``, which
    redelivers what is not acked within ``redeliver_s``, logging in with the secrets of
    ``settings``; the backend's client library is imported only now.

    Raises:
        ConfigurationError: the client library is not installed.
    """
    module, class_name = _backend(config.type)
    backend = getattr(module, class_name)
    source: StreamSource = backend(config, consumer, redeliver_s, **_secrets(config, settings))
    return source


def ensure_broker_stream(config: AnySource, name: str) -> BrokerStream | None:
    """Make sure the broker holds what ``config`` reads: for NATS, the JetStream stream
    capturing the subject (made as ``name`` when none does); ``None`` for Redis, whose key
    the consumer group creates, and for Kafka, whose topic is the cluster's to make (its
    partitions and replication are an operator's choice).

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


def remove_broker_consumer(stream: Stream, settings: StreamsSettings | None = None) -> bool:
    """Remove what the broker keeps for ``stream``'s consumer once the stream is deleted:
    the JetStream durable consumer (which would otherwise hold the stream's messages for
    ever under an interest or work-queue retention, and is listed for ever besides), the
    Redis consumer group, or the Kafka consumer group. The broker's messages stay. ``False``
    when there was none. ``settings``: as for ``open_source``.

    Raises:
        ConfigurationError: the client library is not installed.
        ServiceUnavailableError: the broker cannot be reached.
    """
    config = stream.config.source
    module, _ = _backend(config.type)
    removal = module.remove_consumer(config, consumer_name(stream), **_secrets(config, settings))
    removed: bool = asyncio.run(removal)
    return removed
