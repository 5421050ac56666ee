"""A round reads the prediction log one batch at a time: however long the log, and however
slowly the round consumes it, the reader holds no more than a few batches in memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from loopml.api.context import AppContext
from loopml.monitor import reader
from tests.unit.monitor.logged import log_predictions

APPENDS, ROWS, COLUMNS = 30, 400, 24


def test_a_slow_round_does_not_make_the_reader_run_ahead(store_ctx: AppContext) -> None:
    at = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    rng = np.random.default_rng(0)
    for n in range(APPENDS):  # one Parquet file each, as the log's appends make them
        frame = pd.DataFrame(
            rng.normal(size=(ROWS, COLUMNS)), columns=[f"f{i}" for i in range(COLUMNS)]
        )
        log_predictions(store_ctx, "churn-api", frame, at, [0] * ROWS, prefix=f"r{n}")
    pool = pa.default_memory_pool()
    baseline = pool.bytes_allocated()
    held, sizes, rows = [], [], 0
    batches = reader.predictions_between(
        store_ctx.store,
        store_ctx.artifacts,
        "default",
        "churn-api",
        at - timedelta(hours=1),
        at + timedelta(hours=1),
    )
    for table in batches:
        rows += table.num_rows
        sizes.append(table.nbytes)
        del table
        time.sleep(0.02)  # a round's work on the batch: threads reading ahead would run now
        held.append(pool.bytes_allocated() - baseline)
    assert rows == APPENDS * ROWS
    # A few batches (the one just read, the one read ahead, Parquet's buffers), not the
    # log: Arrow's reader threads held 63-75 % of this log's bytes, one thread 17 %.
    assert max(held) < sum(sizes) / 3, (max(held), max(sizes), sum(sizes))
