"""NATS JetStream: a durable pull consumer with explicit acks, filtered on the subject.

The JetStream stream that captures the subject must exist: ``ensure_stream`` makes one when
a stream is created with ``create_stream`` (``loopml streams create --create-stream``), or
``nats stream add`` does. The consumer ``loopml-<stream id>`` is created on it if missing,
delivering from the start of the stream. A message's position is its stream sequence, which
a redelivery keeps. The ack floor is the consumer's ``ack_floor.stream_seq``: every message
at or below it is acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from loopml.core.errors import ConfigurationError, ConflictError, ServiceUnavailableError
from loopml.core.stream_sources import NatsSource
from loopml.core.streams import BrokerStream, Position
from loopml.data.streams.base import Message, StreamSource

log = logging.getLogger("loopml.data.streams")

OPEN_TIMEOUT_S = 10.0
"""How long ``open`` tries to connect before the server counts as unreachable: nats-py
retries a first connection forever when it reconnects forever, as a source must once up."""
REMOVE_TIMEOUT_S = 3.0
"""How long a stream's deletion tries to reach NATS to remove its consumer: the definition is
deleted either way, and a deletion is often of a stream whose broker is gone."""
MAX_ACK_PENDING = 200_000
"""Messages out and unacked at once: two micro-batches at the largest size, so the broker
never holds back a batch the consumer is waiting to fill."""


def _sequence(msg: Any) -> int:
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>;
    # the newer form adds a domain and an account hash in front, and a token at the end.
    reply: str = msg.reply
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5])
    return int(msg.metadata.sequence.stream)


async def _connect(url: str, error_cb: Any = None, timeout_s: float | None = None) -> Client:
    """A connection to ``url``, given up after ``timeout_s`` (``OPEN_TIMEOUT_S`` as it is
    when called)."""
    timeout_s = OPEN_TIMEOUT_S if timeout_s is None else timeout_s
    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                url,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                error_cb=error_cb,
            ),
            timeout_s,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        await nc.close()
        raise ServiceUnavailableError(
            f"cannot reach NATS at {url} within {timeout_s:g} s: {str(exc) or type(exc).__name__}",
            details={"retryable": True},
        ) from exc
    return nc


async def ensure_stream(config: NatsSource, name: str) -> BrokerStream:
    """The JetStream stream that captures ``config.subject``: the one that already does, or
    a new one named ``name`` over exactly that subject (file storage, the server's limits).

    Raises:
        ServiceUnavailableError: NATS cannot be reached.
        ConflictError: JetStream refused the new stream (its subjects overlap another's).
    """
    nc = await _connect(config.url)
    try:
        js = nc.jetstream()
        try:
            found = await js.find_stream_name_by_subject(config.subject)
            return BrokerStream(name=found, created=False)
        except nats.js.errors.NotFoundError:
            pass
        try:
            await js.add_stream(name=name, subjects=[config.subject])
        except nats.js.errors.APIError as exc:
            raise ConflictError(
                f"JetStream refused the stream {name!r} over {config.subject!r}: "
                f"{exc.description or exc}",
                details={"field": "subject"},
            ) from exc
        return BrokerStream(name=name, created=True)
    finally:
        await nc.close()


async def remove_consumer(config: NatsSource, durable: str) -> bool:
    """Delete the durable consumer ``durable`` from the JetStream stream that captures
    ``config.subject``; ``False`` when neither is there.

    Raises:
        ServiceUnavailableError: NATS cannot be reached.
    """
    nc = await _connect(config.url, timeout_s=REMOVE_TIMEOUT_S)
    try:
        js = nc.jetstream()
        try:
            stream = await js.find_stream_name_by_subject(config.subject)
            return bool(await js.delete_consumer(stream, durable))
        except nats.js.errors.NotFoundError:
            return False
        except (TimeoutError, nats.errors.Error) as exc:  # JetStream off, slow or refusing
            raise ServiceUnavailableError(
                f"NATS at {config.url} did not remove the consumer {durable!r}: "
                f"{str(exc) or type(exc).__name__}",
                details={"retryable": True},
            ) from exc
    finally:
        await nc.close()


class NatsStreamSource(StreamSource):
    """A JetStream subject read through a durable pull consumer."""

    def __init__(self, config: NatsSource, consumer: str, redeliver_s: float = 60.0) -> None:
        self.config = config
        self.consumer = consumer
        self.ack_wait_s = redeliver_s
        self._nc: Any = None
        self._sub: Any = None

    async def open(self) -> None:
        nc = await _connect(self.config.url, self._on_error)
        self._nc = nc
        js = nc.jetstream()
        try:
            stream = await js.find_stream_name_by_subject(self.config.subject)
        except nats.js.errors.NotFoundError as exc:
            raise ConfigurationError(
                f"no JetStream stream captures the subject {self.config.subject!r}: create one "
                f"(nats stream add --subjects '{self.config.subject}')"
            ) from exc
        config = ConsumerConfig(
            durable_name=self.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.config.subject,
            ack_wait=self.ack_wait_s,
            max_ack_pending=MAX_ACK_PENDING,
            max_deliver=-1,
        )
        self._sub = await js.pull_subscribe(
            self.config.subject,
            durable=self.consumer,
            stream=stream,
            config=config,
            pending_msgs_limit=MAX_ACK_PENDING,
            pending_bytes_limit=512 * 1024 * 1024,
        )

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS at %s: %s", self.config.url, exc or type(exc).__name__)

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            got = await self._sub.fetch(batch=max_messages, timeout=max(timeout_s, 0.01))
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return [Message((0, _sequence(m)), m.data, m.reply, m.subject) for m in got]

    async def ack(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        publish = self._nc.publish
        for message in messages[:-1]:
            await publish(message.token, b"+ACK")
        # The last one as a request: JetStream answers once it has applied that ack, and it
        # applies a consumer's acks in order, so all of them are in effect on return (a
        # flush only said the server had the bytes: the consumer's ack floor read next could
        # still be behind). One round trip a batch, as the flush was.
        await self._nc.request(messages[-1].token, b"+ACK", timeout=30)

    async def floor(self) -> Position | None:
        info = await self._sub.consumer_info()
        self.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        seq = info.ack_floor.stream_seq if info.ack_floor is not None else None
        return None if seq is None else (0, int(seq))

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    def id_text(self, position: Position) -> str:
        return str(position[1])
