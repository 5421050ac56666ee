"""A test's own place on the real NATS (a JetStream stream), Redis (a stream key) or Kafka
(a topic on Tansu)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Broker:
    """One test's place on a real broker."""

    kind: str
    url: str
    tag: str
    partitions: int = 1
    """A Kafka topic's partitions."""

    @property
    def source(self) -> str:
        """The ``--source`` of a stream reading it."""
        if self.kind in ("nats", "kafka"):
            return self.url
        return f"{self.url}?stream=t-{self.tag}"

    @property
    def subject(self) -> str | None:
        if self.kind == "kafka":
            return f"t-{self.tag}"
        return f"t{self.tag}.*" if self.kind == "nats" else None

    def publish(self, bodies: Sequence[bytes]) -> None:
        if self.kind == "kafka":
            kafka_publish(self.url, f"t-{self.tag}", bodies, self.partitions)
            return
        asyncio.run(self.apublish(bodies))

    async def apublish(self, bodies: Sequence[bytes]) -> None:
        if self.kind == "kafka":
            await asyncio.to_thread(self.publish, bodies)
            return
        if self.kind == "nats":
            import nats

            nc = await nats.connect(self.url)
            for body in bodies:
                await nc.publish(f"t{self.tag}.a", body)
            await nc.flush()
            await nc.close()
            return
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        for start in range(0, len(bodies), 5000):
            pipe = client.pipeline(transaction=False)
            for body in bodies[start : start + 5000]:
                pipe.xadd(f"t-{self.tag}", {b"data": body})
            await pipe.execute()
        await client.aclose()

    def create(self) -> None:
        asyncio.run(self._create())

    async def _create(self) -> None:
        if self.kind == "kafka":
            kafka_topic(self.url, f"t-{self.tag}", self.partitions)
            return
        if self.kind == "nats":
            import nats

            nc = await nats.connect(self.url)
            try:  # closed on a failure too: an unclosed socket fails the next test's setup
                await nc.jetstream().add_stream(name=f"T{self.tag}", subjects=[f"t{self.tag}.>"])
            finally:
                await nc.close()

    def remove(self) -> None:
        asyncio.run(self._remove())

    async def _remove(self) -> None:
        if self.kind == "kafka":
            kafka_topic(self.url, f"t-{self.tag}", 0)
            return
        if self.kind == "nats":
            import nats

            nc = await nats.connect(self.url)
            try:
                await nc.jetstream().delete_stream(f"T{self.tag}")
            finally:
                await nc.close()
            return
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        await client.delete(f"t-{self.tag}")
        await client.aclose()


def broker_fixture(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The body of a ``broker`` fixture parametrised over ``nats``, ``redis`` and ``kafka``
    (a topic of one partition)."""
    url = request.getfixturevalue(f"{request.param}_server")
    made = Broker(request.param, url, uuid.uuid4().hex[:10])
    made.create()
    yield made
    made.remove()


BROKERS = [
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("kafka", marks=pytest.mark.kafka),
]


def _bootstrap(url: str) -> str:
    return url.removeprefix("kafka://")


def kafka_topic(url: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` on the Kafka at ``url``; delete it with 0."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": _bootstrap(url)})
    if partitions:
        futures = admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=30)
    else:
        futures = admin.delete_topics([topic], request_timeout=30)
    futures[topic].result(60)


def kafka_publish(url: str, topic: str, bodies: Sequence[bytes], partitions: int = 1) -> None:
    """Produce ``bodies`` to ``topic``, round-robin over its ``partitions``, and wait until
    the broker has them all."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": _bootstrap(url), "linger.ms": 5, "acks": "all"})
    failed: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failed.append(str(error))

    for i, body in enumerate(bodies):
        while True:
            try:
                producer.produce(topic, body, partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(60)
    assert left == 0, f"{left} messages not delivered to {topic}"
    assert not failed, f"messages not delivered to {topic}: {failed[:3]}"


async def jetstream_capturing(url: str, subject: str, delete: str | None = None) -> str | None:
    """The JetStream stream capturing ``subject`` on the real NATS at ``url`` (``None``:
    none), after deleting the stream ``delete`` if it is there."""
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if delete is not None:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(delete)
        try:
            found: str = await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            return None
        return found
    finally:
        await nc.close()


async def jetstream_consumers(url: str, subject: str) -> list[str]:
    """The durable consumers of the JetStream stream capturing ``subject`` on the real NATS
    at ``url``."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        stream = await js.find_stream_name_by_subject(subject)
        return [c.name for c in await js.consumers_info(stream) if c.name]
    finally:
        await nc.close()


def start_consumer(settings_file: Path, stream_id: str, log: Path) -> subprocess.Popen[bytes]:
    """A stream's consumer as its own process (``loopml.platform.stream_process``), its output
    appended to ``log``: for the tests that kill it."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "loopml.platform.stream_process", str(settings_file), stream_id],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
