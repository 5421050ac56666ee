"""Feature store tests: the metadata store on SQLite and PostgreSQL (``store`` from the
data conftest), the lake and datasets in a local folder, small hand-built timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.data import lake
from loopml.storage import ArtifactStore, LocalArtifactStore
from loopml.store import MetadataStore

ACTOR = "tester"
P = "default"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

VIEW_YAML = """\
name: user_stats
description: spend per user
entities: [user_id]
event_time: ts
ttl: 2d
source: stats
features: [spend, visits]
"""


def at(days: float) -> datetime:
    """``T0`` plus some days."""
    return T0 + timedelta(days=days)


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def ingest(store: MetadataStore, artifacts: ArtifactStore, table: str, data: pa.Table) -> int:
    """Append ``data`` to lake table ``table``; its new version."""
    return lake.ingest_arrow(store, artifacts, P, table, data, actor=ACTOR).version


def stats(rows: list[tuple[int, float, float, int]]) -> pa.Table:
    """``stats`` rows: (user_id, day, spend, visits)."""
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([at(r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
            "spend": pa.array([r[2] for r in rows], pa.float64()),
            "visits": pa.array([r[3] for r in rows], pa.int64()),
        }
    )
