"""Fixtures for the metadata store tests: an upgraded store on each database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loopml.store import MetadataStore


@pytest.fixture
def empty_store(database_url: str) -> Iterator[MetadataStore]:
    """A store on an empty database (no schema yet); disposed afterwards."""
    store = MetadataStore(database_url)
    yield store
    store.dispose()


@pytest.fixture
def store(empty_store: MetadataStore) -> MetadataStore:
    """A store whose schema is at head, holding only the default project."""
    empty_store.upgrade()
    return empty_store
