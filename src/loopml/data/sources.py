"""Materializing a source: a lake table (``churn``, ``churn@3``) or a SQL query over them.

Dataset snapshots and transforms both read their input through ``materialize``, which pins
every table it reads to an exact version and reports those versions: that is their lineage,
and what vacuum must keep.

Example:
    >>> found = materialize(store, artifacts, "default", "SELECT * FROM churn WHERE age > 30")
    >>> found.sources  # [SourceVersion(table='churn', version=4)]
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from loopml.core.errors import ValidationError
from loopml.data import _delta, lake
from loopml.data.warehouse import DEFAULT_TIMEOUT_S, WarehouseLimits, query_all, stream_all
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

if TYPE_CHECKING:
    import pyarrow.dataset as pads

TABLE_SOURCE = re.compile(r"^\s*([a-z][a-z0-9_]{0,62})(?:@([0-9]{1,9}))?\s*$")
MAX_SOURCE_BYTES = 2 * 1024**3


@dataclass(frozen=True, order=True)
class SourceVersion:
    """One lake table version a materialization read."""

    table: str
    version: int

    def as_dict(self) -> dict[str, object]:
        """``{"table": ..., "version": ...}``, as stored in the metadata DB."""
        return {"table": self.table, "version": self.version}


@dataclass(frozen=True)
class Materialized:
    """What ``materialize`` read.

    Attributes:
        table: all the rows.
        sources: each table version read, sorted (empty tables at no version are omitted).
        query: the SQL, or ``None`` when the source was a table.
    """

    table: pa.Table
    sources: list[SourceVersion]
    query: str | None


def parse_table_source(source: str) -> tuple[str, int | None] | None:
    """``("churn", 3)`` for ``"churn@3"``, ``("churn", None)`` for ``"churn"``, else ``None``
    (the source is SQL)."""
    found = TABLE_SOURCE.fullmatch(source)
    if found is None:
        return None
    return found.group(1), None if found.group(2) is None else int(found.group(2))


class _Pins:
    """A ``TableResolver`` that pins each table it resolves to a version, and keeps them."""

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        project: str,
        given: dict[str, pa.Table] | None = None,
    ) -> None:
        self.store, self.artifacts, self.project = store, artifacts, project
        self.given = given or {}
        self.read: set[SourceVersion] = set()

    def __call__(self, table: str, version: int | None) -> pads.Dataset:
        if version is None and table in self.given:
            from pyarrow import dataset as arrow_dataset

            return arrow_dataset.dataset(self.given[table])
        if version is None:
            current = lake.get_table(self.store, self.artifacts, self.project, table).version
            version = current if current >= 0 else None
        dataset = lake.read_dataset(self.store, self.artifacts, self.project, table, version)
        if version is not None:
            self.read.add(SourceVersion(table, version))
        return dataset


def _check_source(source: object) -> None:
    if not isinstance(source, str) or not source.strip():
        raise ValidationError(
            "expected a source: a table ('churn', 'churn@3') or a SELECT over the tables",
            details={"field": "from"},
        )


def materialize(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    source: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_SOURCE_BYTES,
) -> Materialized:
    """Read ``source`` whole: a table name (``churn``, ``churn@3``) or one ``SELECT``.

    A table named without a version is pinned to its current version, so ``sources`` always
    says exactly what was read.

    Raises:
        ValidationError: an empty source, a refused or failing query, or a result over
            ``max_bytes``.
        NotFoundError: no such project, table or version.
        QueryTimeoutError: the query ran past ``timeout_s``.
    """
    _check_source(source)
    pins = _Pins(store, artifacts, project)
    as_table = parse_table_source(source)
    if as_table is not None:
        dataset = pins(*as_table)
        with _delta.delta_errors("reading the table"):
            rows = dataset.to_table()
        if rows.nbytes > max_bytes:
            raise ValidationError(
                f"table {as_table[0]!r} is {rows.nbytes} bytes, over the limit of {max_bytes}: "
                "select fewer rows or columns with SQL",
                details={"limit_bytes": max_bytes},
            )
        return Materialized(table=rows, sources=sorted(pins.read), query=None)
    rows, _ = query_all(source, pins, timeout_s=timeout_s, max_bytes=max_bytes)
    return Materialized(table=rows, sources=sorted(pins.read), query=source)


@dataclass(frozen=True)
class Streamed:
    """What ``stream`` reads: ``batches`` one at a time, and what they were read from (as
    ``Materialized``)."""

    batches: pa.RecordBatchReader
    sources: list[SourceVersion]
    query: str | None


@contextlib.contextmanager
def stream(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    source: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_rows: int = 65_536,
    limits: WarehouseLimits | None = None,
    given: dict[str, pa.Table] | None = None,
) -> Iterator[Streamed]:
    """``materialize`` a batch at a time, whatever the source's size (see
    ``warehouse.stream_all``): the batches are read inside the block.

    ``given`` names tables in memory the SQL may read beside the project's (rows read
    elsewhere, such as a verified dataset version); a given name hides a project table of
    the same name, so pick one no project table has.

    Raises:
        As ``materialize``; the result is bounded by disk, not memory.
    """
    _check_source(source)
    pins = _Pins(store, artifacts, project, given)
    as_table = parse_table_source(source)
    if as_table is None:
        sql = source
    else:
        name, version = as_table
        sql = f"SELECT * FROM {name}" + ("" if version is None else f"@{version}")  # noqa: S608
    with stream_all(sql, pins, timeout_s=timeout_s, batch_rows=batch_rows, limits=limits) as (
        batches,
        _,
    ):
        yield Streamed(batches, sorted(pins.read), None if as_table else source)
