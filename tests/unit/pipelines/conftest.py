"""Fixtures for the pipeline tests: an upgraded store, user step code on the import path,
and a real worker (child processes) in a background thread."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopml.core.pipelines import PipelineRun
from loopml.pipelines import service
from loopml.pipelines.worker import Worker, WorkerConfig, WorkerThread
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.waiting import eventually

# A lease of 30 s: 3 s lapsed in CI while a loaded machine kept the heartbeat from the CPU
# (or SQLite's write lock), and failed a step that was running fine.
FAST = WorkerConfig(concurrency=2, lease_s=30.0, heartbeat_s=0.3, poll_s=0.02, sweep_s=0.2)


def cluster_settings(home: Path, postgres_url: str, s3_bucket: str, s3_endpoint: str) -> Settings:
    """PostgreSQL metadata and S3 artifacts (moto's server), as every node of a cluster
    reaches them."""
    return Settings(
        home=home,
        database={"url": postgres_url},
        artifacts={
            "root": f"s3://{s3_bucket}/loopml",
            "s3_endpoint_url": s3_endpoint,
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        },
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded defaults (SQLite, local folder) in a fresh home."""
    return Settings(home=tmp_path / "home")


@pytest.fixture
def any_store(migrated_database_url: str) -> Iterator[MetadataStore]:
    """An upgraded store on each database: SQLite, then PostgreSQL."""
    opened = MetadataStore(migrated_database_url)
    opened.upgrade()
    yield opened
    opened.dispose()


@pytest.fixture
def store(settings: Settings) -> Iterator[MetadataStore]:
    opened = open_metadata_store(settings)
    opened.upgrade()
    yield opened
    opened.dispose()


@pytest.fixture
def artifacts(settings: Settings) -> ArtifactStore:
    return open_artifact_store(settings)


@pytest.fixture
def usercode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], Path]]:
    """Write a module of step functions into a folder on the import path."""
    folder = tmp_path / "usercode"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written: list[str] = []

    def write(name: str, source: str) -> Path:
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        written.append(name)
        return path

    yield write
    for name in written:
        sys.modules.pop(name, None)


@contextmanager
def running_worker(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
    config: WorkerConfig = FAST,
    worker_id: str | None = None,
) -> Iterator[Worker]:
    """A real worker (steps in child processes) in a thread of this process."""
    worker = Worker(store, artifacts, settings, config, worker_id=worker_id)
    thread = WorkerThread(worker).start()
    try:
        yield worker
    finally:
        thread.stop()


def wait_run(
    store: MetadataStore, run_id: str, *, timeout_s: float = 60.0, project: str = "default"
) -> PipelineRun:
    """Poll until the run has finished."""

    def finished() -> PipelineRun | None:
        found = service.get_run(store, project, run_id)
        return found if found.status.finished else None

    def state() -> str:
        found = service.get_run(store, project, run_id)
        steps = [(s.name, s.status, s.attempt) for s in found.steps or []]
        return f"run {run_id} is {found.status}, its steps: {steps}"

    return eventually(finished, timeout_s, f"run {run_id} to finish", describe=state)


def step_of(run: PipelineRun, name: str):  # type: ignore[no-untyped-def]
    return next(s for s in run.steps or [] if s.name == name)
