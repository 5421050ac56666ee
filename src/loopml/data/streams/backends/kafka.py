"""Kafka: a consumer group (librdkafka, through confluent-kafka) with manual offset commits.

The group ``loopml-<stream id>`` reads the topic from its start (``auto.offset.reset``
``earliest``) or from its committed offsets. A message's position is ``(partition,
offset)``. Kafka's offsets are cumulative per partition: committing ``n`` says every
offset below ``n`` is done. So the source keeps, per partition, the offsets delivered and
not acked, and an ack commits (synchronously) the lowest of them, or one past the last
delivered when none is left: never past a message not acked. A partition revoked in a
rebalance (or lost with the session) drops its pending set; its messages go to the next
owner from the committed offset, and the commit record drops those already landed.

Partitions move between the group's members with ``cooperative-sticky``; a member that
stops fetching for ``redeliver_s`` (``max.poll.interval.ms``) leaves the group, as one
whose heartbeats stop for ``SESSION_TIMEOUT_MS`` does. The floor is one per partition: below
the first offset delivered since the partition was assigned (reading starts at the committed
offset) or below the offset this source committed since, so it costs no broker call; the
lag is the high watermark of the last fetch reply less that offset (a broker's ListOffsets
"latest" is not relied on: Tansu's lags behind).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from loopml.core.errors import ConfigurationError, ServiceUnavailableError
from loopml.core.stream_sources import KafkaSource
from loopml.core.streams import Floor, Position
from loopml.data.streams.base import Message, StreamSource

log = logging.getLogger("loopml.data.streams")
T = TypeVar("T")

OPEN_TIMEOUT_S = 10.0
"""How long ``open`` waits for the cluster's metadata before it counts as unreachable."""
REMOVE_TIMEOUT_S = 3.0
"""How long a stream's deletion tries to reach Kafka to delete its group (the definition is
deleted either way)."""
SESSION_TIMEOUT_MS = 6_000
"""Heartbeats missed this long and a member is out of the group (shorter with a shorter
``redeliver_s``, since librdkafka wants ``max.poll.interval.ms`` at least as long)."""
FETCH_WAIT_MAX_S = 0.5
"""The longest one fetch blocks its thread: librdkafka's wait cannot be interrupted, and a
stopping consumer (or ``close``) waits for it."""
_NOT_FATAL = {KafkaError._PARTITION_EOF, KafkaError._MAX_POLL_EXCEEDED}


def _server(config: KafkaSource) -> str:
    return config.url.removeprefix("kafka://")


def client_config(config: KafkaSource, sasl_password: SecretStr | None = None) -> dict[str, Any]:
    """The librdkafka settings every client of ``config`` starts from: the bootstrap
    server, the source's own settings (TLS, SASL), and ``sasl_password`` (the server's
    ``streams.kafka_sasl_password``) when the source names a SASL user or mechanism."""
    out: dict[str, Any] = {"bootstrap.servers": _server(config), **config.options}
    sasl = "sasl.username" in config.options or "sasl.mechanism" in config.options
    if sasl and sasl_password is not None:
        out["sasl.password"] = sasl_password.get_secret_value()
    return out


def _unreachable(config: KafkaSource, what: str, exc: Exception) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"cannot reach Kafka at {_server(config)} (topic {config.topic!r}) {what}: {_reason(exc)}",
        details={"retryable": True},
    )


def _reason(exc: Exception | KafkaError) -> str:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(error, KafkaError):
        return str(error.str())
    return str(error) or type(error).__name__


async def remove_consumer(
    config: KafkaSource, group: str, sasl_password: SecretStr | None = None
) -> bool:
    """Delete the consumer group ``group`` (its committed offsets with it; the topic's
    messages stay); ``False`` when there was none. ``sasl_password``: see ``client_config``.

    Raises:
        ServiceUnavailableError: Kafka cannot be reached or refused.
    """
    admin = AdminClient(client_config(config, sasl_password))
    futures = admin.delete_consumer_groups([group], request_timeout=REMOVE_TIMEOUT_S)
    try:
        await asyncio.to_thread(futures[group].result, REMOVE_TIMEOUT_S + 1)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return False
        raise _unreachable(config, f"deleting the group {group!r}", exc) from exc
    except Exception as exc:  # a timed-out future
        raise _unreachable(config, f"deleting the group {group!r}", exc) from exc
    return True


class KafkaStreamSource(StreamSource):
    """A Kafka topic read through a consumer group, offsets committed on ack;
    ``sasl_password``: see ``client_config``."""

    def __init__(
        self,
        config: KafkaSource,
        consumer: str,
        redeliver_s: float = 60.0,
        sasl_password: SecretStr | None = None,
    ) -> None:
        self.config = config
        self._sasl_password = sasl_password
        self.group = consumer
        self.redeliver_ms = max(1, int(redeliver_s * 1000))
        self._consumer: Any = None
        # Rebalance callbacks run in the fetching thread, acks in another: one lock.
        self._lock = threading.Lock()
        self._assigned: set[int] = set()
        self._pending: dict[int, set[int]] = {}
        """Per partition, the offsets delivered and not acked."""
        self._next: dict[int, int] = {}
        """Per partition, one past the last offset delivered since it was assigned."""
        self._committed: dict[int, int] = {}
        """Per assigned partition, an offset below which all are acked: the first delivered
        since it was assigned, or the last this source committed."""
        self._high: dict[int, int] = {}
        """Per held partition, its high watermark after the last fetch."""
        self._error: KafkaError | None = None
        self._worker: ThreadPoolExecutor | None = None
        """The one thread every call on the consumer runs on (see ``_call``), per open."""
        self._calls = 0
        self._idle = threading.Condition(self._lock)

    @property
    def held(self) -> int:
        """Messages delivered and not acked, in the partitions this source holds now."""
        with self._lock:
            return sum(len(offsets) for offsets in self._pending.values())

    def _settings(self) -> dict[str, Any]:
        session = min(SESSION_TIMEOUT_MS, self.redeliver_ms)
        return {
            **client_config(self.config, self._sasl_password),
            "group.id": self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session,
            "heartbeat.interval.ms": max(100, session // 3),
            "max.poll.interval.ms": max(self.redeliver_ms, session),
            "error_cb": self._on_error,
            "logger": log,
        }

    async def open(self) -> None:
        consumer = Consumer(self._settings())
        timeout_s = OPEN_TIMEOUT_S
        try:
            metadata = await asyncio.to_thread(consumer.list_topics, self.config.topic, timeout_s)
        except KafkaException as exc:
            await asyncio.to_thread(consumer.close)
            # The last error the client reported says why (a TLS or SASL failure), where
            # the metadata call only says it timed out.
            cause = KafkaException(self._error) if self._error is not None else exc
            raise _unreachable(self.config, f"within {timeout_s:g} s", cause) from exc
        found = metadata.topics.get(self.config.topic)
        if found is None or found.error is not None:
            await asyncio.to_thread(consumer.close)
            raise ConfigurationError(
                f"no topic {self.config.topic!r} on the Kafka cluster at "
                f"{_server(self.config)}: create it (kafka-topics.sh --bootstrap-server "
                f"{_server(self.config)} --create --topic {self.config.topic} --partitions N)"
            )
        consumer.subscribe(
            [self.config.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{self.group}")
        self._consumer = consumer

    def _on_error(self, error: KafkaError) -> None:
        if error.code() != KafkaError._ALL_BROKERS_DOWN or self._error is None:
            self._error = error  # "all brokers are down" says less than what came before
        log.warning("Kafka at %s: %s", _server(self.config), error.str())

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._assigned.add(tp.partition)
                self._pending[tp.partition] = set()
                self._next.pop(tp.partition, None)
                self._committed.pop(tp.partition, None)  # another member may have moved it
                self._high.pop(tp.partition, None)
        log.info("Kafka %s: assigned %s", self.group, sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self._assigned.discard(tp.partition)
                self._pending.pop(tp.partition, None)
                self._next.pop(tp.partition, None)
                self._committed.pop(tp.partition, None)
                self._high.pop(tp.partition, None)
        log.info("Kafka %s: revoked %s", self.group, sorted(tp.partition for tp in partitions))

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Message]:
        wait = min(max(timeout_s, 0.0), FETCH_WAIT_MAX_S)
        got, highs = await self._call(functools.partial(self._consume, max_messages, wait))
        out: list[Message] = []
        failed: KafkaError | None = None
        topic = self.config.topic
        with self._lock:
            self._high.update(highs)
            pending, following = self._pending, self._next
            for m in got:
                error = m.error()
                if error is not None:
                    if error.code() not in _NOT_FATAL:
                        failed = error
                    log.info("Kafka %s: %s", self.group, error.str())
                    continue
                partition, offset = m.partition(), m.offset()
                held = pending.get(partition)
                if held is None:  # revoked since librdkafka queued it: the next owner reads it
                    continue
                held.add(offset)
                if partition not in following:
                    self._committed.setdefault(partition, offset)
                following[partition] = offset + 1
                out.append(Message((partition, offset), m.value() or b"", None, topic))
        if out:
            self._error = None
            return out
        failed = failed or self._error
        if failed is not None:
            self._error = None
            self._raise(failed)
        return out

    def _raise(self, error: KafkaError) -> None:
        where = f"Kafka at {_server(self.config)} (topic {self.config.topic!r})"
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise ConfigurationError(f"{where}: no such topic any more: {error.str()}")
        raise ServiceUnavailableError(f"{where}: {error.str()}", details={"retryable": True})

    async def ack(self, messages: Sequence[Message]) -> None:
        offsets = self._targets(messages)
        if not offsets:
            return
        try:
            done = await self._call(
                lambda consumer: consumer.commit(offsets=offsets, asynchronous=False)
            )
        except KafkaException as exc:
            raise _unreachable(self.config, "committing offsets", exc) from exc
        with self._lock:
            for tp in done or offsets:
                if tp.error is None and tp.partition in self._assigned:
                    known = self._committed.get(tp.partition, -1)
                    self._committed[tp.partition] = max(known, tp.offset)

    def _consume(
        self, max_messages: int, wait: float, consumer: Any
    ) -> tuple[list[Any], dict[int, int]]:
        """One fetch, and the high watermark of each partition held after it (from the
        fetch replies, cached by librdkafka), on the worker thread: read from the event
        loop while ``consume`` waited, the watermarks blocked it for about 0.1 s a call."""
        got = consumer.consume(max_messages, wait)
        highs: dict[int, int] = {}
        with self._lock:
            held = sorted(self._assigned)
        for partition in held:
            tp = TopicPartition(self.config.topic, partition)
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:  # else no fetch reply for it yet
                highs[partition] = high
        return got, highs

    async def _call(self, method: Callable[[Any], T]) -> T:
        """The consumer's ``method`` on the source's one worker thread, so a commit never
        runs beside a fetch: an offset commit made from another thread while ``consume``
        waited took up to 0.4 s (measured against Tansu, 29 November; 1-6 ms after the
        fetch returned), and the micro-batch behind it waited too. ``close`` waits for the
        calls in flight (closing a librdkafka consumer under a running call crashes the
        process)."""
        with self._lock:
            if self._consumer is None:
                raise ServiceUnavailableError("the Kafka source is closed")
            call = functools.partial(method, self._consumer)
            worker = self._worker
            self._calls += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(worker, call)
        finally:
            with self._lock:
                self._calls -= 1
                self._idle.notify_all()

    def _targets(self, messages: Sequence[Message]) -> list[TopicPartition]:
        """The offsets to commit once ``messages`` are acked: per partition still held,
        the lowest offset delivered and not acked, or one past the last delivered."""
        touched: set[int] = set()
        with self._lock:
            pending = self._pending
            for message in messages:
                partition, offset = message.id
                held = pending.get(partition)
                if held is not None:
                    held.discard(offset)
                touched.add(partition)
            out = []
            for partition in touched:
                if partition not in self._next:  # revoked, or nothing delivered since
                    continue
                held = pending.get(partition)
                target = min(held) if held else self._next[partition]
                if target > self._committed.get(partition, -1):
                    out.append(TopicPartition(self.config.topic, partition, target))
        return out

    async def floor(self) -> Floor | None:
        if self._consumer is None:
            return None
        with self._lock:
            committed = {p: c for p, c in self._committed.items() if p in self._assigned}
        self._measure_lag(committed)
        floor = {p: c - 1 for p, c in committed.items()}
        return floor or None

    def _measure_lag(self, committed: dict[int, int]) -> None:
        with self._lock:
            highs = {p: self._high[p] for p in committed if p in self._high}
        if highs:
            self.lag = sum(max(0, high - committed[p]) for p, high in highs.items())

    async def close(self) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
            worker, self._worker = self._worker, None
        if consumer is not None:
            await asyncio.to_thread(self._close, consumer)
        if worker is not None:
            worker.shutdown(wait=False)

    def _close(self, consumer: Any) -> None:
        with self._lock:
            self._idle.wait_for(lambda: self._calls == 0)
        consumer.close()

    def id_text(self, position: Position) -> str:
        return f"{position[0]}:{position[1]}"
