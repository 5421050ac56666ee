"""The SQL warehouse: read-only DuckDB SQL over a project's lake tables.

Each query gets a fresh in-memory DuckDB connection, locked down before the query is even
parsed (see ``_sandbox``). The tables the query names (``churn``, or a past version
``churn@3``) are looked up through a ``TableResolver`` — the lake, in the server — and
registered as Arrow datasets under exactly those names; nothing else is visible, so another
project's tables cannot be reached: they are never registered.

Paging: the query runs as ``SELECT * FROM (<query>) LIMIT limit+1 OFFSET offset``, so each
page is a fresh run. Pages are stable only when the query has an ``ORDER BY`` that orders
rows totally, and when the tables do not change between page requests (pin them with
``churn@3`` for that).

Example:
    >>> result = run_query("SELECT count(*) AS n FROM churn", resolver)
    >>> result.table.column("n")[0].as_py()
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from loopml.core.errors import ValidationError
from loopml.data._query_process import QueryProcessPool, parse_bytes
from loopml.data._sandbox import MAX_TIMEOUT_S as MAX_TIMEOUT_S
from loopml.data._sandbox import (
    QueryLimits,
    TableRef,
    check_query,
    checker,
    rewrite_versions,
    single_select,
)
from loopml.data._sandbox import execute as execute

if TYPE_CHECKING:
    import pyarrow.dataset as pads

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "MAX_LIMIT",
    "MAX_TIMEOUT_S",
    "QueryResult",
    "TableRef",
    "TableResolver",
    "WarehouseLimits",
    "query_all",
    "rewrite_versions",
    "run_query",
    "stream_all",
]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
DEFAULT_TIMEOUT_S = 30.0
MAX_QUERY_CHARS = 100_000
# The query workers of this process (started on the first query; see ``_query_process``).
_POOL = QueryProcessPool()

TableResolver = Callable[[str, "int | None"], "pads.Dataset"]
"""``(table, version or None) -> Arrow dataset``; raises ``NotFoundError`` when absent."""


@dataclass(frozen=True)
class WarehouseLimits:
    """Server-side limits of every query, whatever the caller asks for.

    Attributes:
        max_result_bytes: the largest result (one page, in Arrow memory) that is returned.
        sandbox: the memory and thread budget of the query's connection.
    """

    max_result_bytes: int = 64 * 1024 * 1024
    sandbox: QueryLimits = field(default_factory=QueryLimits)


@dataclass(frozen=True)
class QueryResult:
    """One page of a query's answer.

    Attributes:
        table: the page's rows, as Arrow.
        columns: ``(name, DuckDB type)`` of each column, such as ``("n", "BIGINT")``.
        offset: how many rows were skipped before this page.
        next_offset: the ``offset`` of the next page, ``None`` on the last one.
        tables: the tables read, as written (``churn``, ``churn@3``).
        elapsed_s: the query's run time.
    """

    table: pa.Table
    columns: list[tuple[str, str]]
    offset: int
    next_offset: int | None
    tables: list[str]
    elapsed_s: float


def run_query(
    sql: str,
    resolve: TableResolver,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    limits: WarehouseLimits | None = None,
) -> QueryResult:
    """Run one read-only ``SELECT`` and return one page of its rows.

    Args:
        sql: the query; tables by name (``churn``) or past version (``churn@3``).
        resolve: finds a table's Arrow dataset (the lake of one project).
        limit: most rows returned (1 to 100,000).
        offset: rows to skip first (see the module's note on stable paging).
        timeout_s: the query is interrupted after this many seconds (at most 300).
        limits: server-side limits; the defaults when omitted.

    Raises:
        ValidationError: the query was refused, or failed (the message says why).
        NotFoundError: a referenced table (or version) does not exist.
        QueryTimeoutError: it ran longer than ``timeout_s``.
    """
    limits = limits or WarehouseLimits()
    _check_arguments(sql, limit, offset, timeout_s)
    sql = rewrite_versions(sql)
    con = checker()
    body = single_select(con, sql)
    # Running the caller's SQL is the point; it is checked (again, wrapped) just below.
    page = f"LIMIT {limit + 1} OFFSET {offset}"
    paged = f"SELECT * FROM (\n{body}\n) AS _loopml_page {page}"  # noqa: S608
    refs = check_query(con, paged)
    tables = _resolved(refs, resolve)
    started = time.monotonic()
    table, columns = _run_guarded(paged, tables, limits, timeout_s, limits.max_result_bytes)
    elapsed = time.monotonic() - started
    if table.nbytes > limits.max_result_bytes:
        raise ValidationError(
            f"the result page is {table.nbytes} bytes, over the limit of "
            f"{limits.max_result_bytes}: ask for fewer rows (limit) or fewer columns",
            details={"limit_bytes": limits.max_result_bytes},
        )
    more = table.num_rows > limit
    return QueryResult(
        table=table.slice(0, limit) if more else table,
        columns=columns,
        offset=offset,
        next_offset=offset + limit if more else None,
        tables=sorted(ref.alias for ref in refs),
        elapsed_s=elapsed,
    )


def query_all(
    sql: str,
    resolve: TableResolver,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = 2 * 1024**3,
    limits: WarehouseLimits | None = None,
) -> tuple[pa.Table, list[TableRef]]:
    """Run one read-only ``SELECT`` and return all of its rows, with the tables it read.

    For materializing (dataset snapshots, transforms), not for answering people: there is
    no row limit, only ``max_bytes`` on the result.

    Raises:
        ValidationError: the query was refused or failed, or its result is over
            ``max_bytes``.
        NotFoundError: a referenced table (or version) does not exist.
        QueryTimeoutError: it ran longer than ``timeout_s``.
    """
    limits = limits or WarehouseLimits()
    _check_arguments(sql, 1, 0, timeout_s)
    sql = rewrite_versions(sql)
    con = checker()
    body = single_select(con, sql)
    wrapped = f"SELECT * FROM (\n{body}\n) AS _loopml_all"  # noqa: S608
    refs = check_query(con, wrapped)
    tables = _resolved(refs, resolve)
    table, _ = _run_guarded(wrapped, tables, limits, timeout_s, max_bytes)
    if table.nbytes > max_bytes:
        raise ValidationError(
            f"the query's result is {table.nbytes} bytes, over the limit of {max_bytes}: "
            "select fewer rows or columns",
            details={"limit_bytes": max_bytes},
        )
    return table, refs


@contextlib.contextmanager
def stream_all(
    sql: str,
    resolve: TableResolver,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = 64 * 1024**3,
    batch_rows: int = 65_536,
    limits: WarehouseLimits | None = None,
) -> Iterator[tuple[pa.RecordBatchReader, list[TableRef]]]:
    """``query_all`` a batch at a time: memory bounded whatever the result's size.

    The query runs to its end in a worker, which writes each batch to a temporary file as
    DuckDB yields it; the block then reads the batches back one at a time, so neither the
    worker nor this process holds the whole result. Only DuckDB's own state (an
    aggregate's groups, a sort) is bounded by the memory budget. ``max_bytes`` bounds the
    file on disk. The file is deleted when the block ends.

    Raises:
        ValidationError: the query was refused or failed, or its result is over
            ``max_bytes``.
        NotFoundError: a referenced table (or version) does not exist.
        QueryTimeoutError: it ran longer than ``timeout_s``.
    """
    limits = limits or WarehouseLimits()
    _check_arguments(sql, 1, 0, timeout_s)
    sql = rewrite_versions(sql)
    con = checker()
    body = single_select(con, sql)
    wrapped = f"SELECT * FROM (\n{body}\n) AS _loopml_all"  # noqa: S608
    refs = check_query(con, wrapped)
    tables = _resolved(refs, resolve)
    with _POOL.stream(
        wrapped,
        tables,
        limits.sandbox,
        timeout_s,
        batch_rows=batch_rows,
        max_result_bytes=max_bytes,
    ) as batches:
        yield batches, refs


def _resolved(refs: list[TableRef], resolve: TableResolver) -> list[tuple[str, pads.Dataset]]:
    """Each table the query reads, by the name it is registered under; a table created
    without columns (nothing was written to it yet) is refused: DuckDB cannot scan one."""
    tables = []
    for ref in refs:
        data = resolve(ref.name, ref.version)
        if len(data.schema) == 0:
            raise ValidationError(
                f"table {ref.alias} has no columns yet (nothing was written to it): query it "
                "once rows have landed",
                details={"table": ref.alias},
            )
        tables.append((ref.alias, data))
    return tables


def _check_arguments(sql: str, limit: int, offset: int, timeout_s: float) -> None:
    if not sql.strip() or len(sql) > MAX_QUERY_CHARS:
        raise ValidationError(
            f"expected a query of 1 to {MAX_QUERY_CHARS} characters, got {len(sql)}",
            details={"field": "query"},
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"expected a limit from 1 to {MAX_LIMIT}, got {limit}; page with offset",
            details={"field": "limit"},
        )
    if offset < 0:
        raise ValidationError(f"expected an offset >= 0, got {offset}", details={"field": "offset"})
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValidationError(
            f"expected a timeout from 0 to {MAX_TIMEOUT_S:g} seconds, got {timeout_s}",
            details={"field": "timeout_s"},
        )


def _run_guarded(
    sql: str,
    tables: list[tuple[str, pads.Dataset]],
    limits: WarehouseLimits,
    timeout_s: float,
    result_bytes: int,
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Run a checked query in a worker process whose memory the kernel bounds."""
    budget = parse_bytes(limits.sandbox.memory_limit) + result_bytes
    return _POOL.run(sql, tables, limits.sandbox, timeout_s, budget)
