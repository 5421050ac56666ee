"""The API in-process: the real app on a real database, driven through the real SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.platform import create_api_app
from loopml.settings import Settings

MAX_BODY = 64 * 1024
MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture
def settings(tmp_path: Path, migrated_database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_UPLOAD},
    )


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    """A raw HTTP client bound to the app (for requests the SDK would never send)."""
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def client(http: TestClient) -> Client:
    """The SDK, talking to the in-process app."""
    return Client(http=http)
