"""A test's own place on the real NATS (a JetStream stream) or Redis (a stream key)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest


@dataclass
class Broker:
    """One test's place on a real broker."""

    kind: str
    url: str
    tag: str

    @property
    def source(self) -> str:
        """The ``--source`` of a stream reading it."""
        if self.kind == "nats":
            return self.url
        return f"{self.url}?stream=t-{self.tag}"

    @property
    def subject(self) -> str | None:
        return f"t{self.tag}.*" if self.kind == "nats" else None

    def publish(self, bodies: Sequence[bytes]) -> None:
        asyncio.run(self.apublish(bodies))

    async def apublish(self, bodies: Sequence[bytes]) -> None:
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
        if self.kind == "nats":
            import nats

            nc = await nats.connect(self.url)
            await nc.jetstream().add_stream(name=f"T{self.tag}", subjects=[f"t{self.tag}.>"])
            await nc.close()

    def remove(self) -> None:
        asyncio.run(self._remove())

    async def _remove(self) -> None:
        if self.kind == "nats":
            import nats

            nc = await nats.connect(self.url)
            await nc.jetstream().delete_stream(f"T{self.tag}")
            await nc.close()
            return
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        await client.delete(f"t-{self.tag}")
        await client.aclose()


def broker_fixture(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The body of a ``broker`` fixture parametrised over ``nats`` and ``redis``."""
    url = request.getfixturevalue(f"{request.param}_server")
    made = Broker(request.param, url, uuid.uuid4().hex[:10])
    made.create()
    yield made
    made.remove()


BROKERS = [
    pytest.param("nats", marks=pytest.mark.nats),
    pytest.param("redis", marks=pytest.mark.redis),
]


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
