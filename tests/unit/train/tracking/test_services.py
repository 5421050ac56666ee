"""Tracking services over a real store and real artifact stores (a folder, and S3 on moto)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, NotFoundError
from loopml.core.runs import parse_batch
from loopml.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from loopml.store import MetadataStore
from loopml.train import tracking
from loopml.train.tracking import artifacts as run_artifacts


@pytest.fixture
def store(database_url: str) -> Iterator[MetadataStore]:
    metadata = MetadataStore(database_url)
    metadata.upgrade()
    yield metadata
    metadata.dispose()


@pytest.fixture
def files(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def test_start_run_creates_the_experiment_and_logs_the_first_batch(store: MetadataStore) -> None:
    batch = parse_batch({"params": {"lr": "0.1"}, "inputs": [{"ref": "snap-1"}]})
    run = tracking.start_run(
        store,
        "default",
        "churn",
        heartbeat_timeout_s=30,
        actor="ada",
        batch=batch,
        create_experiment=True,
        code_version={"git_commit": "abc", "git_dirty": True},
    )
    assert run.params == {"lr": "0.1"}
    assert run.code_version == {"git_commit": "abc", "git_dirty": True}
    assert tracking.get_experiment(store, "default", "churn").name == "churn"
    with pytest.raises(NotFoundError, match="experiment 'nope'"):
        tracking.start_run(store, "default", "nope", heartbeat_timeout_s=30, actor="ada")


def test_concurrent_first_runs_share_one_experiment(store: MetadataStore) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            tracking.start_run(
                store,
                "default",
                "race",
                heartbeat_timeout_s=30,
                actor="ada",
                create_experiment=True,
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [e.name for e in tracking.list_experiments(store, "default").items] == ["race"]


def test_sweep_marks_only_timed_out_runs(store: MetadataStore) -> None:
    tracking.ensure_experiment(store, "default", "churn", actor="ada")
    short = tracking.start_run(store, "default", "churn", heartbeat_timeout_s=1, actor="ada")
    long = tracking.start_run(store, "default", "churn", heartbeat_timeout_s=3600, actor="ada")
    assert tracking.sweep_lost_runs(store) == 0
    from loopml.store import run_cleanup

    with store.session() as session:
        lost = run_cleanup.sweep_lost(session, now=utcnow() + timedelta(seconds=5), actor="system")
    assert lost == [short.id]
    assert tracking.get_run(store, "default", long.id).status == "RUNNING"
    with pytest.raises(ConflictError, match="LOST"):
        tracking.heartbeat(store, "default", short.id)


def _delete_frees_files(store: MetadataStore, files: ArtifactStore) -> None:
    tracking.ensure_experiment(store, "default", "churn", actor="ada")
    run = tracking.start_run(store, "default", "churn", heartbeat_timeout_s=30, actor="ada")
    keep = tracking.start_run(store, "default", "churn", heartbeat_timeout_s=30, actor="ada")
    for name in ("a.bin", "model/model.onnx", "model/loopml-model.json"):
        run_artifacts.write(store, files, "default", run.id, name, [b"x" * 10_000])
    run_artifacts.write(store, files, "default", keep.id, "kept.bin", [b"k"])
    listed = run_artifacts.list_(store, files, "default", run.id, prefix="model/")
    assert [a.key for a in listed.items] == ["model/loopml-model.json", "model/model.onnx"]
    assert tracking.delete_run(store, files, "default", run.id, actor="ada") == 3
    assert [o.key.rsplit("/", 1)[-1] for o in files.list("")] == ["kept.bin"]
    with pytest.raises(NotFoundError):
        run_artifacts.write(store, files, "default", run.id, "late.bin", [b"x"])


def test_delete_run_frees_its_files_on_a_folder(store: MetadataStore, files: ArtifactStore) -> None:
    _delete_frees_files(store, files)


def test_delete_run_frees_its_files_on_s3(tmp_path: Path, s3_bucket: str, s3_endpoint: str) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'loopml.db'}")
    store.upgrade()
    s3 = S3ArtifactStore(
        s3_bucket,
        "root",
        endpoint_url=s3_endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )
    _delete_frees_files(store, s3)
    store.dispose()
