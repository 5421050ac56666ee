"""The registry on a real database (SQLite file, PostgreSQL) and a real local artifact store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import ArtifactStore, LocalArtifactStore
from loopml.store import MetadataStore


@pytest.fixture
def store(database_url: str) -> Iterator[MetadataStore]:
    """An upgraded store holding only the default project."""
    metadata = MetadataStore(database_url)
    metadata.upgrade()
    yield metadata
    metadata.dispose()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")
