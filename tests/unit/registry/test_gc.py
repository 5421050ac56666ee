"""Garbage collection frees the files of deleted projects and runs, on disk and on S3, and
never touches a live run's files or a model version's package."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from loopml.core import layout
from loopml.core.registry import VersionStatus
from loopml.registry import collect_garbage, register_version, resolve
from loopml.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from loopml.store import MetadataStore, projects
from loopml.store.orm import RunRow
from tests.tracking_rows import log_model, make_run

BLOB = b"x" * 50_000
Backend = tuple[ArtifactStore, Callable[[], dict[str, int]]]


def _s3_sizes(endpoint: str, bucket: str) -> dict[str, int]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


def _disk_sizes(root: Path) -> dict[str, int]:
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.stat().st_size
    return found


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The artifact store, and how to measure what it holds (key -> bytes)."""
    if request.param == "local":
        root = tmp_path / "gc-artifacts"
        return LocalArtifactStore(root), lambda: _disk_sizes(root)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    store = S3ArtifactStore(
        bucket, "", endpoint_url=endpoint, access_key_id="testing", secret_access_key="testing"
    )
    return store, lambda: _s3_sizes(endpoint, bucket)


def test_gc_frees_bytes_on_disk_and_on_s3(store: MetadataStore, backend: Backend) -> None:
    artifacts, measure = backend
    # Live: a run whose model is registered, a run without one, a project's own upload.
    registered = make_run(store)
    log_model(store, artifacts, registered)
    version = register_version(
        store, artifacts, project="default", model_name="churn", run_id=registered.id, actor="a"
    )
    assert version.status == VersionStatus.READY
    live = make_run(store)
    artifacts.write_bytes(f"{layout.run_artifacts_prefix(live.project_id, live.id)}/a.bin", BLOB)
    upload = f"{layout.project_artifacts_prefix(live.project_id)}/report.bin"
    artifacts.write_bytes(upload, BLOB)
    # Garbage: a deleted run's files, and a deleted project's files.
    dead = make_run(store)
    dead_prefix = layout.run_artifacts_prefix(dead.project_id, dead.id)
    for name in ("a.bin", "sub/b.bin"):
        artifacts.write_bytes(f"{dead_prefix}/{name}", BLOB)
    with store.session() as session:
        session.delete(session.get(RunRow, dead.id))
    with store.session() as session:
        projects.create(session, "gone", actor="a")
    gone = make_run(store, "gone")
    artifacts.write_bytes(f"{layout.run_artifacts_prefix(gone.project_id, gone.id)}/m.bin", BLOB)
    artifacts.write_bytes(f"{layout.project_artifacts_prefix(gone.project_id)}/r.bin", BLOB)
    with store.session() as session:
        projects.delete(session, "gone", actor="a")

    before = measure()
    preview = collect_garbage(store, artifacts, dry_run=True)
    assert measure() == before
    assert (preview.objects, preview.bytes) == (4, 4 * len(BLOB))
    assert sorted(preview.prefixes) == sorted(
        [f"projects/{dead.project_id}/runs/{dead.id}/", f"projects/{gone.project_id}/"]
    )
    report = collect_garbage(store, artifacts)
    after = measure()
    assert (report.objects, report.bytes) == (4, 4 * len(BLOB))
    assert sum(before.values()) - sum(after.values()) == report.bytes
    assert len(before) - len(after) == report.objects
    assert not any(dead.id in key or gone.project_id in key for key in after)
    # Nothing live was touched: the registered package still verifies, the rest is there.
    assert artifacts.read_bytes(upload) == BLOB
    assert artifacts.exists(f"{layout.run_artifacts_prefix(live.project_id, live.id)}/a.bin")
    assert resolve(store, "default", "churn").status == VersionStatus.READY
    again = register_version(
        store, artifacts, project="default", model_name="churn", run_id=registered.id, actor="a"
    )
    assert again.status == VersionStatus.READY
    assert collect_garbage(store, artifacts).objects == 0


def test_gc_removes_abandoned_temporary_files(store: MetadataStore, tmp_path: Path) -> None:
    root = tmp_path / "tmp-artifacts"
    artifacts = LocalArtifactStore(root)
    stale = root / ".loopml-tmp" / "abandoned"
    stale.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert collect_garbage(store, artifacts, dry_run=True).temporary_removed == 0
    assert stale.exists()
    assert collect_garbage(store, artifacts).temporary_removed == 1
    assert not stale.exists()
