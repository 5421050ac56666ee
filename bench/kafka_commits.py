"""How long a Kafka offset commit takes by where it is made: between two fetches on the
fetching thread, or from another thread while ``consume`` waits (what loopml's Kafka source
did before its calls shared one thread; docs/streams.md, Figures).

A bare confluent-kafka consumer reads a topic of one partition on a Tansu broker in memory
(started here), doing 20 ms of "work" per fetch; it commits after each fetch ("between"),
or a second thread commits the last offset read every 0.3 s ("beside": synchronous, and
"beside, async"). Each mode runs twice, alternating; every commit call's seconds are printed.

Run ``python bench/kafka_commits.py [--messages N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from streams import _Kafka, _messages, _tansu  # bench/streams.py: its broker and messages

EVERY_S = 0.3
WORK_S = 0.02


def _consumer(server: str) -> Any:
    return Consumer(
        {
            "bootstrap.servers": server,
            "group.id": f"commits-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 2000,
        }
    )


def _run(server: str, topic: str, n: int, mode: str) -> tuple[float, list[float]]:
    """Read ``n`` messages committing as ``mode`` says: the rate after the first delivery
    and each commit call's seconds."""
    consumer = _consumer(server)
    consumer.subscribe([topic])
    last = [-1]
    took: list[float] = []
    done = threading.Event()

    def commit(offset: int, asynchronous: bool) -> None:
        start = time.perf_counter()
        target = [TopicPartition(topic, 0, offset + 1)]
        consumer.commit(offsets=target, asynchronous=asynchronous)
        took.append(time.perf_counter() - start)

    def beside() -> None:
        while not done.wait(EVERY_S):
            if last[0] >= 0:
                commit(last[0], asynchronous=mode == "beside, async")

    helper = threading.Thread(target=beside) if mode != "between" else None
    if helper is not None:
        helper.start()
    got, first = 0, None
    try:
        while got < n:
            messages = consumer.consume(5000, 0.5)
            if messages and first is None:
                first = time.perf_counter()
            for message in messages:
                if message.error() is None:
                    got += 1
                    last[0] = message.offset()
            time.sleep(WORK_S)
            if mode == "between" and messages:
                commit(last[0], asynchronous=False)
    finally:
        done.set()
        if helper is not None:
            helper.join()
        consumer.close()
    assert first is not None
    return n / (time.perf_counter() - first), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    url, broker = _tansu()
    try:
        kafka = _Kafka(uuid.uuid4().hex[:8], url)
        asyncio.run(kafka.publish(_messages(args.messages)))
        server = url.removeprefix("kafka://")
        for mode in ("between", "beside", "beside, async") * 2:
            rate, took = _run(server, kafka.subject, args.messages, mode)
            shown = ", ".join(f"{s * 1000:.0f}" for s in took)
            print(f"{mode:14s} {rate:9,.0f} msg/s; {len(took)} commits, ms: {shown}", flush=True)
            print(f"{'':14s} slowest {max(took) * 1000:.0f} ms", flush=True)
        asyncio.run(kafka.remove())
    finally:
        with contextlib.suppress(Exception):
            broker.kill()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
