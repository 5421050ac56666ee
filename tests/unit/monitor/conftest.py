"""A platform context (store and artifacts) on each database, with one deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.faces.context import AppContext
from loopml.platform.startup import build_context
from loopml.settings import Settings
from tests.unit.api.test_feedback import make_deployment


@pytest.fixture
def store_ctx(tmp_path: Path, migrated_database_url: str) -> Iterator[AppContext]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
    )
    ctx = build_context(settings)
    ctx.store.upgrade()
    make_deployment(ctx, "churn-api")
    yield ctx
    ctx.store.dispose()
