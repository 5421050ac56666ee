"""Streamed snapshots (``create_version_streamed``, the path of training sets): DuckDB's
canonical order, and the hash, profile and split taken a column at a time from a file, give
the same version as the in-memory path, on SQLite and PostgreSQL, a local folder and S3."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import tempfile

import numpy as np
import pyarrow as pa
import pytest

from loopml.core.datasets import SplitSpec
from loopml.core.errors import ValidationError
from loopml.data import datasets, lake
from loopml.data.canonical import content_hash
from loopml.data.sources import materialize
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

ACTOR = "tester"
P = "default"


def _mixed(n: int = 600) -> pa.Table:
    """Rows drawn from small pools, so that many rows tie on their first columns and the
    order is decided by later ones; -0.0 and 0.0, NaN, infinities, nulls, non-ASCII text."""
    rng = np.random.default_rng(3)

    def pick(pool: list[object], kind: pa.DataType) -> pa.Array:
        return pa.array([pool[i] for i in rng.integers(0, len(pool), n)], kind)

    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "g": pick(["b", "a", "é", None, "B", "", "zz"], pa.string()),
            "f": pick(
                [0.0, -0.0, float("nan"), None, 1.5, float("-inf"), float("inf")], pa.float64()
            ),
            "i": pick([3, None, -7, 2**40, 0], pa.int64()),
            "flag": pick([True, False, None], pa.bool_()),
            "ts": pick(
                [day, None, day + dt.timedelta(microseconds=1)], pa.timestamp("us", tz="UTC")
            ),
            "d": pick([dt.date(2024, 1, 2), None, dt.date(1970, 1, 1)], pa.date32()),
            "dec": pick(
                [decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")], pa.decimal128(10, 2)
            ),
            "bin": pick([b"\x00", None, b"xy", b""], pa.binary()),
            "label": pick(["churn", "stay", "stay"], pa.string()),
        }
    )


def _tmp_entries() -> set[str]:
    return {e for e in os.listdir(tempfile.gettempdir()) if e.startswith("loopml-snapshot-")}


def test_a_streamed_version_is_the_in_memory_version(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    version = lake.ingest_arrow(store, artifacts, P, "mixed", _mixed(), actor=ACTOR).version
    spec = SplitSpec(eval_fraction=0.25, stratify="label", seed=5)
    read = materialize(store, artifacts, P, "SELECT * FROM mixed")
    in_memory = datasets.create_version_from_rows(
        store, artifacts, P, "in_memory", read.table, source="x", sources=read.sources,
        split=spec, actor=ACTOR,
    )  # fmt: skip
    before = _tmp_entries()
    # Batches of 7 rows: the file has many row groups, the parts are cut across them.
    streamed = datasets.create_version_streamed(
        store, artifacts, P, "streamed", "SELECT * FROM mixed", source="x", split=spec,
        actor=ACTOR, batch_rows=7,
    )  # fmt: skip
    assert _tmp_entries() == before, "the snapshot's local files are removed"
    assert streamed.created
    assert streamed.content_hash == in_memory.content_hash
    assert streamed.profile == in_memory.profile
    assert streamed.columns == in_memory.columns
    assert streamed.row_count == in_memory.row_count == 600
    assert [(s.table, s.version) for s in streamed.sources] == [("mixed", version)]
    assert in_memory.split is not None
    assert streamed.split is not None
    for field in ("train_hash", "eval_hash", "train_rows", "eval_rows", "strata", "classes"):
        assert getattr(streamed.split, field) == getattr(in_memory.split, field), field
    # Read back verified against the recorded hashes; the file is in canonical order, so
    # hashing it unordered (sorting it again) gives the same hash.
    rows = datasets.read_version(store, artifacts, P, "streamed")
    assert content_hash(rows) == streamed.content_hash
    for part in ("train", "eval"):
        # Row for row (NaN is not equal to itself, so compared as text; DuckDB writes -0.0
        # as 0.0, the hash's own normalization).
        got = datasets.read_version(store, artifacts, P, "streamed", part).to_pylist()
        want = datasets.read_version(store, artifacts, P, "in_memory", part).to_pylist()
        for row in want:
            row["f"] = None if row["f"] is None else row["f"] + 0.0
        assert repr(got) == repr(want)
    again = datasets.create_version_streamed(
        store, artifacts, P, "streamed", "SELECT * FROM mixed", source="x", split=spec,
        actor=ACTOR, batch_rows=50,
    )  # fmt: skip
    assert not again.created
    assert again.version == streamed.version


def test_streamed_given_rows_and_errors(store: MetadataStore, artifacts: ArtifactStore) -> None:
    given = {"loopml_rows_0123": pa.table({"k": [2, 1, 2], "label": ["a", "b", "a"]})}
    made = datasets.create_version_streamed(
        store, artifacts, P, "given", "SELECT * FROM loopml_rows_0123", source="given",
        given=given, actor=ACTOR,
    )  # fmt: skip
    assert datasets.read_version(store, artifacts, P, "given").to_pydict() == {
        "k": [1, 2, 2],
        "label": ["b", "a", "a"],
    }
    assert made.sources == []
    before = _tmp_entries()
    with pytest.raises(ValidationError, match=r"cannot stratify on 'nope'.*columns: k, label"):
        datasets.create_version_streamed(
            store, artifacts, P, "given2", "SELECT * FROM loopml_rows_0123", source="given",
            given=given, split=SplitSpec(eval_fraction=0.5, stratify="nope"), actor=ACTOR,
        )  # fmt: skip
    with pytest.raises(ValidationError, match=r"does not parse|Parser Error"):
        datasets.create_version_streamed(
            store, artifacts, P, "given2", "SELECT FROM WHERE", source="bad", actor=ACTOR
        )
    assert _tmp_entries() == before
    with pytest.raises(Exception, match="given2"):
        datasets.get_version(store, P, "given2")
