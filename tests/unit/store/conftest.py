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
def store(migrated_database_url: str) -> Iterator[MetadataStore]:
    """A store whose schema is at head, holding only the default project (a copy of one
    migrated per test process; the migrations' own tests use ``empty_store``)."""
    store = MetadataStore(migrated_database_url)
    yield store
    store.dispose()
