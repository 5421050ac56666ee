"""The registry on a real database (SQLite file, PostgreSQL) and a real local artifact store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import ArtifactStore, LocalArtifactStore
from loopml.store import MetadataStore


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[MetadataStore]:
    """A store at head holding only the default project (a copy of one migrated per test
    process)."""
    metadata = MetadataStore(migrated_database_url)
    yield metadata
    metadata.dispose()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")
