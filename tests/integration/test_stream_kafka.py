"""Kafka on a real broker (Tansu): a consumer process SIGKILLed while the producer is still
writing, on a topic of three partitions, lands each message exactly once: offsets never pass
an unacked message, and the stream's commit record drops what comes back.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from loopml.core.streams import Stream
from loopml.data import lake
from loopml.data.streams import service
from loopml.data.streams.base import consumer_name
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore, projects
from tests.brokers import kafka_publish, kafka_topic, start_consumer
from tests.waiting import eventually

MESSAGES = 20_000
PARTITIONS = 3


@pytest.fixture
def topic(kafka_server: str) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    kafka_topic(kafka_server, name, PARTITIONS)
    yield name
    kafka_topic(kafka_server, name, 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    metadata.upgrade()
    with metadata.session() as session:
        projects.create(session, "p", actor="test")
    yield metadata
    metadata.dispose()


def _stream(store: MetadataStore, url: str, topic: str, **options: int) -> Stream:
    return service.create(
        store, "p", "s1", source=url, subject=topic, table="orders", actor="test", **options
    )


def _body(i: int) -> bytes:
    return orjson.dumps({"id": i, "name": "x" * 100})


def _committed(store: MetadataStore) -> int:
    return service.get(store, "p", "s1").stats.messages


def _landed_once(store: MetadataStore, root: Path, n: int) -> None:
    ids = lake.read_dataset(store, LocalArtifactStore(root), "p", "orders").to_table(columns=["id"])
    column = ids.column("id")
    assert len(column) == n
    assert pc.count_distinct(column).as_py() == n  # no duplicate
    assert (pc.min(column).as_py(), pc.max(column).as_py()) == (0, n - 1)  # no gap
    assert service.get(store, "p", "s1").stats.messages == n


def _group_at_end(url: str, topic: str, group: str) -> bool:
    """Whether ``group`` has committed every partition of ``topic`` up to its end."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer(
        {
            "bootstrap.servers": url.removeprefix("kafka://"),
            "group.id": group,
            "enable.auto.commit": False,  # it only looks: assigned, it never joins the group
        }
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = probe.committed(tps, timeout=10)
        # The high watermark as a fetch reply gives it (ListOffsets "latest" lags on Tansu).
        probe.assign(tps)
        probe.consume(1, 1.0)
        highs = [probe.get_watermark_offsets(tp, cached=True)[1] for tp in tps]
        return all(c.offset == h and h > 0 for c, h in zip(committed, highs, strict=True))
    finally:
        probe.close()


@pytest.mark.timeout(300)
def test_killed_while_the_producer_writes_every_message_lands_once(
    tmp_path: Path, store: MetadataStore, kafka_server: str, topic: str
) -> None:
    stream = _stream(store, kafka_server, topic, batch_rows=1000, batch_ms=100, redeliver_s=2)
    root = tmp_path / "artifacts"
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(
        json.dumps(
            {
                "home": str(tmp_path / "home"),
                "database": {"url": f"sqlite:///{tmp_path / 'meta.db'}"},
                "artifacts": {"root": str(root)},
            }
        )
    )
    produced = threading.Event()

    def produce() -> None:
        for start in range(0, MESSAGES, 1000):
            kafka_publish(
                kafka_server, topic, [_body(i) for i in range(start, start + 1000)], PARTITIONS
            )
        produced.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    log = tmp_path / "consumer.log"
    rng = random.Random(52)
    for _kill in range(2):
        process = start_consumer(settings_file, stream.id, log)
        target = _committed(store) + rng.randint(500, 3000)
        eventually(
            lambda: _committed(store) >= target or process.poll() is not None,  # noqa: B023
            120,
            f"{target} messages committed",
            describe=lambda: log.read_text()[-3000:],
        )
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(rng.uniform(0, 0.2))  # a random point of a batch, not a wait for a result
        process.send_signal(signal.SIGKILL)
        process.wait()
    producer.join(120)
    assert produced.is_set()
    process = start_consumer(settings_file, stream.id, log)
    try:
        eventually(
            lambda: _group_at_end(kafka_server, topic, consumer_name(stream)),
            120,
            "every offset committed",
            describe=lambda: f"{_committed(store)} committed\n{log.read_text()[-3000:]}",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    _landed_once(store, root, MESSAGES)
