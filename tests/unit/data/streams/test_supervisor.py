"""The supervisor that ``loopml up`` and ``loopml worker --streams`` run: a consumer process
per stream, restarted when it dies, paused and stopped through the stream's row."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from loopml.data.streams import service
from loopml.platform.stream_supervisor import StreamSupervisor
from loopml.settings import Settings
from loopml.store import MetadataStore
from tests.brokers import Broker
from tests.waiting import eventually


def _until(check: Callable[[], bool], what: str, within_s: float = 90.0) -> None:
    eventually(check, within_s, what)


def _committed(committed: Callable[[], int], n: int) -> None:
    eventually(
        lambda: committed() == n,
        90,
        f"{n} messages committed",
        describe=lambda: f"committed: {committed()}",
    )


def _bodies(start: int, n: int) -> list[bytes]:
    return [orjson.dumps({"id": i}) for i in range(start, start + n)]


def test_consumers_are_started_restarted_paused_and_stopped(
    store: MetadataStore,
    project: str,
    broker: Broker,
    tmp_path: Path,
    migrated_database_url: str,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},  # the store's own
        artifacts={"root": str(tmp_path / "artifacts")},
    )
    stream = service.create(
        store,
        project,
        "s1",
        source=broker.source,
        subject=broker.subject,
        table="events",
        batch_ms=50,
        redeliver_s=1,
        actor="test",
    )

    def committed() -> int:
        return service.get(store, project, "s1").stats.messages

    supervisor = StreamSupervisor(store, settings, interval_s=0.2, grace_s=10).start()
    try:
        broker.publish(_bodies(0, 100))
        _committed(committed, 100)
        first = supervisor.pids()[stream.id]
        os.kill(first, signal.SIGKILL)
        _until(lambda: supervisor.pids().get(stream.id, first) != first, "a new consumer")
        broker.publish(_bodies(100, 100))
        _committed(committed, 200)

        service.set_paused(store, project, "s1", True, actor="test")
        _until(
            lambda: service.get(store, project, "s1").stats.status == "paused",
            "the stream to read paused",
            30,
        )
        time.sleep(0.5)  # a fetch under way when the pause was read still lands its batch
        broker.publish(_bodies(200, 50))
        time.sleep(1.0)
        assert committed() == 200, f"{committed()} committed while paused, not 200"
        service.set_paused(store, project, "s1", False, actor="test")
        _committed(committed, 250)

        service.delete(store, project, "s1", actor="test")
        _until(lambda: stream.id not in supervisor.pids(), "its consumer gone", 30)
    finally:
        supervisor.stop()
    assert supervisor.pids() == {}


def test_an_applied_update_restarts_the_consumer_with_it(
    store: MetadataStore,
    project: str,
    broker: Broker,
    tmp_path: Path,
    migrated_database_url: str,
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},  # the store's own
        artifacts={"root": str(tmp_path / "artifacts")},
    )
    where = f"source: '{broker.source}'\n" + (
        f"subject: '{broker.subject}'\n" if broker.subject else ""
    )
    spec = f"name: s1\n{where}table: events\nbatch_ms: 50\nredeliver_s: 1\n"
    (made,) = service.apply(store, project, spec, actor="test").items
    sid = made.stream.id

    def committed() -> int:
        return service.get(store, project, "s1").stats.messages

    supervisor = StreamSupervisor(store, settings, interval_s=0.2, grace_s=10).start()
    try:
        broker.publish(_bodies(0, 50))
        _committed(committed, 50)
        first = supervisor.pids()[sid]
        changed = spec + "transform: SELECT id * 10 AS id FROM batch\n"
        (updated,) = service.apply(store, project, changed, actor="test").items
        assert updated.action == "updated"
        _until(lambda: supervisor.pids().get(sid, first) != first, "a restarted consumer", 30)
        broker.publish(_bodies(50, 50))
        _committed(committed, 100)
    finally:
        supervisor.stop()
    from loopml.data import lake
    from loopml.wiring import open_artifact_store

    rows = lake.read_dataset(store, open_artifact_store(settings), project, "events").to_table()
    assert sorted(rows.column("id").to_pylist()) == [*range(50), *range(500, 1000, 10)]
