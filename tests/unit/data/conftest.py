"""The data layer's backends: the metadata store on SQLite and PostgreSQL, the artifact
store on a local folder and on moto's S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from loopml.store import MetadataStore


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[MetadataStore]:
    """A store at head holding only the default project (a copy of one migrated per test
    process: migrating each test's own cost 0.45 s on PostgreSQL)."""
    metadata = MetadataStore(migrated_database_url)
    yield metadata
    metadata.dispose()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return S3ArtifactStore(
        bucket,
        "root",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
    )
