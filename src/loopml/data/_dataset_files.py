"""A dataset version's files: Parquet parts written (and undone when the version is not
recorded), and read back verified against their recorded hash.

A snapshot is either a table in memory or, for one too large for memory, a
``SnapshotFile``: its rows already in canonical order in a local Parquet file, written a
batch at a time, then hashed, profiled and split one column at a time (``summarize``), so
memory holds a row group and one column, never the whole table.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.core.datasets import (
    PARTS,
    DatasetProfile,
    DatasetSplit,
    DatasetVersion,
    Part,
    SplitSpec,
    Stratum,
)
from loopml.core.errors import ArtifactIntegrityError, NotFoundError, ValidationError
from loopml.core.ids import new_id
from loopml.data import split as splits
from loopml.data.canonical import RowsHash, content_hash, normalize
from loopml.data.profile import profile_column
from loopml.storage import ArtifactStore

log = logging.getLogger("loopml.data")
_CHUNK = 1024 * 1024


_ROW_GROUP_BYTES = 16 * 1024**2
"""A snapshot file's row groups hold about this much: few enough that reading one column
of the file is a few large reads, small enough that the buffered batches stay small."""


@dataclass(frozen=True)
class SnapshotFile:
    """Rows in canonical order (normalized) in a local Parquet file."""

    path: str
    schema: pa.Schema
    num_rows: int

    @functools.cached_property
    def _metadata(self) -> pq.FileMetaData:
        return pq.read_metadata(self.path)  # parsed once, not for every column read

    def column(self, name: str) -> pa.ChunkedArray:
        """One column, read whole."""
        return pq.ParquetFile(self.path, metadata=self._metadata).read(columns=[name]).column(0)

    def row_groups(self) -> Iterator[pa.Table]:
        """Every column, a row group at a time, in order. (``iter_batches`` reads ahead
        without bound: 883 MB held for a 700 MB file here.)"""
        source = pq.ParquetFile(self.path, metadata=self._metadata)
        for group in range(source.num_row_groups):
            yield source.read_row_group(group)


class SnapshotWriter:
    """A ``SnapshotFile`` written a batch at a time (each normalized as ``canonical``),
    buffered into row groups of about ``_ROW_GROUP_BYTES``."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self.schema = normalize(schema.empty_table()).schema
        self.rows = 0
        self._out = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._held: list[pa.Table] = []
        self._held_bytes = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if not table.num_rows:
            return
        table = normalize(table).cast(self.schema)
        self._held.append(table)
        self._held_bytes += table.nbytes
        self.rows += table.num_rows
        if self._held_bytes >= _ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._held:
            group = pa.concat_tables(self._held)
            self._out.write_table(group, row_group_size=group.num_rows)
        self._held, self._held_bytes = [], 0

    def close(self) -> SnapshotFile:
        try:
            self._flush()
        finally:
            self._out.close()
        return SnapshotFile(self.path, self.schema, self.rows)


def write_sorted(batches: pa.RecordBatchReader, path: str) -> SnapshotFile:
    """Write ``batches`` (rows already in canonical order) as a ``SnapshotFile``."""
    writer = SnapshotWriter(path, batches.schema)
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        done = writer.close()
    return done


@dataclass(frozen=True)
class FileSummary:
    """What a snapshot records of a file's rows, read a column at a time: the content hash,
    the profile, and for a split its assignment and each part's hash."""

    digest: str
    profile: DatasetProfile
    parts: Parts | None


def summarize(rows: SnapshotFile, split: SplitSpec | None, folder: str) -> FileSummary:
    """Hash and profile ``rows``, and split them into two files in ``folder``, as
    ``content_hash``, ``profile_table`` and ``Parts.of`` would in memory: each column is read
    once, for all of it; the parts are written a row group at a time.

    Raises:
        ValidationError: a split that cannot be made (as ``split.assign``).
    """
    assignment = None
    if split is not None:
        names = rows.schema.names
        wanted = [split.stratify] if split.stratify in names else []
        stratum = pq.ParquetFile(rows.path).read(columns=wanted)
        assignment = splits.assign(stratum, split, columns=names)
    width = len(rows.schema)
    whole = RowsHash(rows=rows.num_rows, columns=width)
    profiles = []
    hashes = None
    if assignment is not None:
        held_out = int(assignment.is_eval.sum())
        mask = pa.array(assignment.is_eval)
        hashes = (
            RowsHash(rows=rows.num_rows - held_out, columns=width),
            RowsHash(rows=held_out, columns=width),
        )
    for field in rows.schema:
        column = rows.column(field.name)
        whole.add(field, column)
        profiles.append(profile_column(field.name, column))
        if hashes is not None:
            hashes[0].add(field, column.filter(pc.invert(mask)))
            hashes[1].add(field, column.filter(mask))
        del column
    profile = DatasetProfile(rows=rows.num_rows, columns=profiles)
    if assignment is None or split is None or hashes is None:
        return FileSummary(whole.hexdigest(), profile, None)
    train, evals = _split_file(rows, assignment.is_eval, folder)
    parts = Parts(
        spec=split,
        train=train,
        held_out=evals,
        train_hash=hashes[0].hexdigest(),
        eval_hash=hashes[1].hexdigest(),
        strata=assignment.strata,
        classes=assignment.classes,
    )
    return FileSummary(whole.hexdigest(), profile, parts)


def _split_file(
    snapshot: SnapshotFile, is_eval: np.ndarray, folder: str
) -> tuple[SnapshotFile, SnapshotFile]:
    train = SnapshotWriter(os.path.join(folder, "train.parquet"), snapshot.schema)
    held_out = SnapshotWriter(os.path.join(folder, "eval.parquet"), snapshot.schema)
    try:
        start = 0
        for group in snapshot.row_groups():
            mask = pa.array(is_eval[start : start + group.num_rows])
            start += group.num_rows
            held_out.write(group.filter(mask))
            train.write(group.filter(pc.invert(mask)))
    finally:
        parts = train.close(), held_out.close()
    return parts


def _parquet(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _chunks(buffer: pa.Buffer) -> Iterator[bytes]:
    view = memoryview(buffer)
    for start in range(0, len(view), _CHUNK):
        yield bytes(view[start : start + _CHUNK])


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            yield chunk


class Writes:
    """The files one attempt wrote, deleted again if the attempt does not record them."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self.keys: list[str] = []

    def put(self, key: str, rows: pa.Table | SnapshotFile) -> None:
        """Store rows as Parquet: a table encoded here, a snapshot file copied a chunk at a
        time."""
        if isinstance(rows, SnapshotFile):
            self.artifacts.write(key, _file_chunks(rows.path))
        else:
            self.artifacts.write(key, _chunks(_parquet(rows)))
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
    train: pa.Table | SnapshotFile
    held_out: pa.Table | SnapshotFile
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


def part_key(version: DatasetVersion, part: Part) -> tuple[str, str]:
    """The key of a version's (or a part's) file and the hash recorded for its rows."""
    if part not in PARTS:
        raise ValidationError(
            f"invalid part {str(part)[:20]!r}: expected one of {', '.join(PARTS)}",
            details={"field": "part", "valid": list(PARTS)},
        )
    if part == "all":
        return version.data_key, version.content_hash
    if version.split is None:
        raise NotFoundError(
            f"{version.ref} has no train/eval split: freeze one with `loopml datasets split "
            f"{version.ref} --eval-fraction 0.2`",
            details={"dataset": version.dataset, "version": version.version, "part": part},
        )
    expected = version.split.train_hash if part == "train" else version.split.eval_hash
    return version.split.keys[part], expected


def load_verified(
    artifacts: ArtifactStore, version: DatasetVersion, part: Part
) -> tuple[bytes, pa.Table, str]:
    """A version's (or a part's) file: its bytes, its rows and their hash, verified
    against the hash recorded for it.

    Raises:
        ValidationError: a bad part.
        NotFoundError: the version has no split for a part.
        ArtifactIntegrityError: the file is missing, unreadable or holds other rows.
    """
    key, expected = part_key(version, part)
    refused = f"{version.ref} ({part}) is refused: its file in the artifact store"
    try:
        data = artifacts.read_bytes(key)
    except NotFoundError as exc:
        raise ArtifactIntegrityError(
            f"{refused} is missing; create the version again from its source",
            details={"dataset": version.dataset, "version": version.version, "part": part},
        ) from exc
    try:
        table = pq.read_table(io.BytesIO(data))
        found = content_hash(table, ordered=True)
    except (pa.ArrowException, ValidationError, OSError):
        found = ""
    if found != expected:
        raise ArtifactIntegrityError(
            f"{refused} does not match its recorded content hash {expected[:12]} (it was "
            "changed or corrupted after the snapshot was made); create the version again "
            "from its source",
            details={
                "dataset": version.dataset,
                "version": version.version,
                "part": part,
                "expected": expected,
            },
        )
    return data, table, expected
