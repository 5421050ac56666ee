"""The data layer's backends: the metadata store on SQLite and PostgreSQL, the artifact
store on a local folder and on moto's S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from loopml.store import MetadataStore
from tests.conftest import migrated_copy

# The metadata store and the artifact store are independent layers, so the data tests run
# on two pairs of them, not on their four combinations: every test still runs on each
# backend (SQLite and PostgreSQL, a local folder and moto's S3), in half the runs (the cross
# product was 71 tests x 4, a quarter of a CI run's unit time on moto's server alone).
# A test that reads only one of the stores runs on its half of each pair.
BACKENDS = [
    pytest.param(("sqlite", "local"), id="sqlite-local"),
    pytest.param(
        ("postgres", "s3"), id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]
    ),
]


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The (metadata database, artifact store) pair a test runs on."""
    pair: tuple[str, str] = request.param
    return pair


@pytest.fixture
def migrated_database_url(
    backends: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """The pair's metadata database, at head (see the root conftest's fixture)."""
    with migrated_copy(request, backends[0], tmp_path) as url:
        yield url


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[MetadataStore]:
    """A store at head holding only the default project (a copy of one migrated per test
    process: migrating each test's own cost 0.45 s on PostgreSQL)."""
    metadata = MetadataStore(migrated_database_url)
    yield metadata
    metadata.dispose()


@pytest.fixture
def artifacts(
    backends: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> ArtifactStore:
    """The pair's artifact store: a local folder, or a bucket on moto's S3 server."""
    if backends[1] == "local":
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
