"""Writing a dataset version's files: Parquet parts, undone when the version is not recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.core.datasets import DatasetSplit, SplitSpec, Stratum
from loopml.core.ids import new_id
from loopml.data import split as splits
from loopml.data.canonical import content_hash
from loopml.storage import ArtifactStore

log = logging.getLogger("loopml.data")
_CHUNK = 1024 * 1024


def _parquet(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _chunks(buffer: pa.Buffer) -> Iterator[bytes]:
    view = memoryview(buffer)
    for start in range(0, len(view), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


class Writes:
    """The files one attempt wrote, deleted again if the attempt does not record them."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self.keys: list[str] = []

    def put(self, key: str, table: pa.Table) -> None:
        self.artifacts.write(key, _chunks(_parquet(table)))
        self.keys.append(key)

    def undo(self) -> None:
        for key in self.keys:
            try:
                self.artifacts.delete(key)
            except Exception:  # the original failure is the one to report
                log.exception("could not delete %s after a failed snapshot", key)
        self.keys.clear()


@dataclass(frozen=True)
class Parts:
    """A split decided and hashed, before it has a place in storage."""

    spec: SplitSpec
    train: pa.Table
    held_out: pa.Table
    train_hash: str
    eval_hash: str
    strata: list[Stratum]
    classes: int

    @classmethod
    def of(cls, rows: pa.Table, spec: SplitSpec) -> Parts:
        assignment = splits.assign(rows, spec)
        train, held_out = splits.parts(rows, assignment)
        return cls(
            spec=spec,
            train=train,
            held_out=held_out,
            train_hash=content_hash(train, ordered=True),
            eval_hash=content_hash(held_out, ordered=True),
            strata=assignment.strata,
            classes=assignment.classes,
        )

    def write(self, writes: Writes, version_prefix: str) -> DatasetSplit:
        """Write both parts under a folder of their own and describe them."""
        # A folder per attempt: two concurrent splits of one version never share a file,
        # so the one that loses can delete its own without touching the winner's.
        folder = f"{version_prefix}/split-{new_id()}"
        keys = {"train": f"{folder}/train.parquet", "eval": f"{folder}/eval.parquet"}
        writes.put(keys["train"], self.train)
        writes.put(keys["eval"], self.held_out)
        return DatasetSplit(
            spec=self.spec,
            train_rows=self.train.num_rows,
            eval_rows=self.held_out.num_rows,
            train_hash=self.train_hash,
            eval_hash=self.eval_hash,
            keys=keys,
            strata=self.strata,
            classes=self.classes,
        )
