"""A stream's consumer process SIGKILLed at random points three times, on the real NATS and
Redis, with SQLite and PostgreSQL metadata: the table ends with every message exactly once.

``LOOPML_TEST_STREAM_MESSAGES`` sets how many (10,000 by default; 100,000 for the full run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from loopml.data import lake
from loopml.data.streams import service
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore, projects
from tests.brokers import BROKERS, Broker, broker_fixture, start_consumer
from tests.waiting import eventually

MESSAGES = int(os.environ.get("LOOPML_TEST_STREAM_MESSAGES", "10000"))
KILLS = 3


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    yield from broker_fixture(request)


@pytest.fixture
def store(database_url: str) -> Iterator[MetadataStore]:
    metadata = MetadataStore(database_url)
    metadata.upgrade()
    yield metadata
    metadata.dispose()


def _committed(store: MetadataStore) -> int:
    return service.get(store, "p", "s1").stats.messages


def _wait_for(
    store: MetadataStore, target: int, process: subprocess.Popen[bytes], log: Path
) -> None:
    eventually(
        lambda: _committed(store) >= target or process.poll() is not None,
        240,
        f"{target} messages committed",
        interval_s=0.02,
        describe=lambda: f"{_committed(store)} committed; the log:\n{log.read_text()[-3000:]}",
    )
    if process.poll() is not None and _committed(store) < target:
        pytest.fail(f"the consumer exited with {process.returncode}:\n{log.read_text()[-3000:]}")


@pytest.mark.timeout(600)
def test_killed_three_times_every_message_lands_once(
    tmp_path: Path, database_url: str, store: MetadataStore, broker: Broker
) -> None:
    artifacts_root = tmp_path / "artifacts"
    with store.session() as session:
        projects.create(session, "p", actor="test")
    stream = service.create(
        store,
        "p",
        "s1",
        source=broker.source,
        subject=broker.subject,
        table="orders",
        batch_rows=500,
        batch_ms=200,
        redeliver_s=2,
        actor="test",
    )
    broker.publish(
        [orjson.dumps({"id": i, "name": "x" * 150, "v": i * 0.5}) for i in range(MESSAGES)]
    )
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(
        json.dumps(
            {
                "home": str(tmp_path / "home"),
                "database": {"url": database_url},
                "artifacts": {"root": str(artifacts_root)},
            }
        )
    )
    log = tmp_path / "consumer.log"
    rng = random.Random(os.environ.get("LOOPML_TEST_SEED", "20"))
    killed_at = []
    for kill in range(KILLS):
        process = start_consumer(settings_file, stream.id, log)
        # Somewhere in this quarter of the messages, wherever a commit or an ack then is. A
        # consumer that restarted fast may already be past the quarter (CI once saw every
        # message committed before the third kill): then the next message is the target, and
        # a stream with nothing left is not killed again.
        low = _committed(store)
        if low >= MESSAGES:
            process.send_signal(signal.SIGKILL)
            process.wait()
            break
        high = min(MESSAGES - 1, (kill + 1) * MESSAGES // (KILLS + 1))
        target = rng.randint(low + 1, max(low + 1, high))
        _wait_for(store, target, process, log)
        time.sleep(rng.uniform(0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(_committed(store))
    # The kills must land mid-stream for the test to mean anything.
    assert killed_at, "the consumer committed every message before it could be killed"
    assert killed_at[0] < MESSAGES, killed_at
    process = start_consumer(settings_file, stream.id, log)
    _wait_for(store, MESSAGES, process, log)
    time.sleep(0.5)  # a duplicate commit, were there one, would land now
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    artifacts = LocalArtifactStore(artifacts_root)
    ids = lake.read_dataset(store, artifacts, "p", "orders").to_table(columns=["id"]).column("id")
    assert len(ids) == MESSAGES
    assert pc.count_distinct(ids).as_py() == MESSAGES  # no duplicate
    assert (pc.min(ids).as_py(), pc.max(ids).as_py()) == (0, MESSAGES - 1)  # no gap
    shown = service.get(store, "p", "s1").stats
    assert (shown.messages, shown.dead_letters) == (MESSAGES, 0)
    assert lake.get_table(store, artifacts, "p", "orders").row_count == MESSAGES
