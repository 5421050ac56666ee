"""The model server's tests: the binary classifier's server in-process (the models
themselves are in tests/unit/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.unit.conftest import Served, make_app


@pytest.fixture
def client(cancer: Served) -> Iterator[TestClient]:
    """The binary classifier's server, in-process, lifespan included."""
    with TestClient(make_app(cancer), base_url="http://127.0.0.1") as test_client:
        yield test_client
