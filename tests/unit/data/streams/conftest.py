"""Real brokers for the stream tests (see ``tests.brokers``), and a project to consume into."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.storage import ArtifactStore, LocalArtifactStore
from loopml.store import MetadataStore, projects
from tests.brokers import BROKERS, Broker, broker_fixture

PROJECT = "p"


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    yield from broker_fixture(request)


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def project(store: MetadataStore) -> str:
    with store.session() as session:
        projects.create(session, PROJECT, actor="test")
    return PROJECT
