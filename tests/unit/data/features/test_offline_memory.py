"""A training set's memory does not grow with its size: the process that makes it holds a
batch and one column at a time, never the joined rows (the join and the canonical sort run
in the warehouse's query worker, under DuckDB's memory budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from loopml.data.features import views
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

from .conftest import ACTOR, T0, P, ingest

ROWS = 600_000
FEATURES = 24
USERS = 20_000

_RUN = """
import json, resource, sys
import pyarrow as pa
from loopml.data.features import offline
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore

store, artifacts = MetadataStore(sys.argv[1]), LocalArtifactStore(sys.argv[2])
pool = pa.default_memory_pool()
made = offline.training_set(
    store, artifacts, "default", "wide", entities="labels", views=["wide_stats"],
    actor="tester",
)
print(json.dumps({
    "rows": made.row_count,
    "columns": len(made.columns),
    "arrow_peak": pool.max_memory(),
}))
"""


def _view_yaml() -> str:
    features = ", ".join(f"x{i}" for i in range(FEATURES))
    return (
        "name: wide_stats\nentities: [user_id]\nevent_time: ts\nttl: 30d\nsource: stats\n"
        f"features: [{features}]\n"
    )


def test_a_training_set_is_made_a_column_at_a_time(
    store: MetadataStore, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    start = int(T0.timestamp() * 1_000_000)
    day = 86_400 * 1_000_000
    stats = {
        "user_id": pa.array(rng.integers(0, USERS, USERS * 4), pa.int64()),
        "ts": pa.array(start + rng.integers(0, 60 * day, USERS * 4), pa.timestamp("us", "UTC")),
    }
    for i in range(FEATURES):
        stats[f"x{i}"] = pa.array(rng.random(USERS * 4))
    ingest(store, artifacts, "stats", pa.table(stats))
    labels = {
        "user_id": pa.array(rng.integers(0, USERS, ROWS), pa.int64()),
        "event_time": pa.array(start + rng.integers(0, 60 * day, ROWS), pa.timestamp("us", "UTC")),
        "label": pa.array(rng.integers(0, 2, ROWS)),
    }
    ingest(store, artifacts, "labels", pa.table(labels))
    views.apply(store, artifacts, P, _view_yaml(), actor=ACTOR)
    done = subprocess.run(
        [sys.executable, "-c", _RUN, store.url, str(tmp_path / "artifacts")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"] == ROWS
    assert figures["columns"] == 3 + FEATURES
    whole = ROWS * (3 + FEATURES) * 8  # the training set in memory: 130 MB
    # Held at once: a row group (16 MiB), one column (4.8 MB) and what Parquet and
    # the profile's quantiles copy of it. Holding the joined rows would need all of them.
    assert figures["arrow_peak"] < whole / 4, (figures, whole)
