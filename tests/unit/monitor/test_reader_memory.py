"""A round reads the prediction log one batch at a time: however long the log, and however
slowly the round consumes it, the reader holds no more than a few batches in memory."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from loopml.faces.context import AppContext
from tests.unit.monitor.logged import log_predictions

APPENDS, ROWS, COLUMNS = 30, 400, 24
PROBE = """
import json, sys, time
from datetime import UTC, datetime, timedelta
import pyarrow as pa
from loopml.predictions import reader
from loopml.settings import Settings
from loopml.wiring import open_artifact_store, open_metadata_store

settings = Settings(database={"url": sys.argv[1]}, artifacts={"root": sys.argv[2]})
store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
at = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
pool = pa.default_memory_pool()
baseline = pool.bytes_allocated()
held, sizes, rows = [], [], 0
batches = reader.predictions_between(
    store, artifacts, "default", "churn-api", at - timedelta(hours=1), at + timedelta(hours=1)
)
for table in batches:
    rows += table.num_rows
    sizes.append(table.nbytes)
    del table
    time.sleep(0.02)  # a round's work on the batch: threads reading ahead would run now
    held.append(pool.bytes_allocated() - baseline)
print(json.dumps([held, sizes, rows]))
"""


def test_a_slow_round_does_not_make_the_reader_run_ahead(store_ctx: AppContext) -> None:
    at = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    rng = np.random.default_rng(0)
    for n in range(APPENDS):  # one Parquet file each, as the log's appends make them
        frame = pd.DataFrame(
            rng.normal(size=(ROWS, COLUMNS)), columns=[f"f{i}" for i in range(COLUMNS)]
        )
        log_predictions(store_ctx, "churn-api", frame, at, [0] * ROWS, prefix=f"r{n}")
    # Arrow's pool is the process's: measured in a process of its own, where no thread
    # left by an earlier test in this worker allocates beside the reader.
    settings = store_ctx.settings
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, settings.database_url, settings.artifact_root],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    held, sizes, rows = json.loads(probe.stdout.strip().splitlines()[-1])
    assert rows == APPENDS * ROWS
    # A few batches (the one just read, the one read ahead, Parquet's buffers), not the
    # log: Arrow's reader threads held 63-75 % of this log's bytes, one thread 17 %.
    assert max(held) < sum(sizes) / 3, (max(held), max(sizes), sum(sizes))
