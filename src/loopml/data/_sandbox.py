"""The warehouse's sandbox: a locked-down DuckDB connection and the check of a query.

Two layers, so that a gap in one is caught by the other:

1. **The connection** (``open_connection``) is in-memory, and before any user SQL runs it is
   configured with ``enable_external_access = false`` (no file, URL, ``ATTACH``, ``COPY``,
   ``INSTALL`` or ``LOAD``), no extension auto-install or auto-load, no community
   extensions, no Python replacement scans (a query could otherwise read any Python
   variable of the server by name), no persistent secrets, no spilling to disk, a memory
   and thread budget, and finally ``lock_configuration = true`` so that ``SET``/``PRAGMA``
   cannot undo any of it.
2. **The query** (``check_query``) must be exactly one ``SELECT`` (``WITH`` and ``FROM``-first
   included). DuckDB's own parser (``json_serialize_sql``) gives its tree, which is walked
   for every table reference and function call: table references must be bare table names
   (``churn``, ``churn@3``) — never a file name, URL or other catalog; table functions must
   be on a short allow-list (``range``, ``unnest``, ...); a few scalar functions that read
   server state are refused. A refusal names what was refused.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.core.errors import QueryTimeoutError, ValidationError

if TYPE_CHECKING:
    from loopml.data._duckdb import duckdb

TABLE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_VERSIONED_REF = re.compile(r"^([a-z][a-z0-9_]{0,62})@([0-9]{1,18})$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+(?![0-9A-Za-z_.])")

# Table functions that compute rows from their arguments alone and touch nothing outside.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that would tell a query about the server (settings, environment) or run
# SQL text the checker never saw.
REFUSED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "json_execute_serialized_sql",
        "query",
        "query_table",
    }
)
_READ_ONLY_HINT = (
    "only one read-only SELECT over the project's tables is allowed "
    "(for example: SELECT * FROM churn LIMIT 10)"
)


@dataclass(frozen=True)
class QueryLimits:
    """The resource budget of one query's connection.

    Attributes:
        memory_limit: DuckDB's memory budget (``'1GB'``); a query needing more fails.
        threads: worker threads of the connection.
        spill_bytes: how much a query over its memory budget may write to a temporary
            folder of its own (deleted after it), for the platform's own batch jobs; 0 (the
            default, and always for people's queries) turns spilling off.
    """

    memory_limit: str = "1GB"
    threads: int = 2
    spill_bytes: int = 0


@dataclass(frozen=True)
class TableRef:
    """A table a query reads: ``churn`` (the current version) or ``churn@3``."""

    name: str
    version: int | None = None

    @property
    def alias(self) -> str:
        """The name it is registered under in the connection."""
        return self.name if self.version is None else f"{self.name}@{self.version}"


def open_connection(
    limits: QueryLimits, spill_folder: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection, locked down before any user SQL can run; it
    spills to ``spill_folder`` (up to ``limits.spill_bytes``) only when both are given."""
    from loopml.data._duckdb import duckdb

    config: dict[str, Any] = {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "allow_persistent_secrets": False,
        "python_enable_replacements": False,
        "memory_limit": limits.memory_limit,
        "threads": limits.threads,
        # DuckDB estimates a scanned Arrow dataset at about one row and plans an ASOF join
        # under 64 estimated rows as a nested loop: quadratic on real inputs (a training
        # set's join, features/offline.py). Always the ASOF join.
        "asof_loop_join_threshold": 0,
        # An empty temp directory turns spilling off: a query over its memory budget fails
        # instead of writing to the server's disk.
        "temp_directory": "",
        "max_temp_directory_size": "0 bytes",
    }
    if spill_folder and limits.spill_bytes > 0:
        config["temp_directory"] = spill_folder
        config["max_temp_directory_size"] = f"{limits.spill_bytes} bytes"
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET enable_progress_bar = false")
    # Results do not depend on the server's local time zone: a TIMESTAMPTZ comes out as
    # Arrow's timestamp[tz=UTC] (the lake's own type; by default "Etc/UTC" or
    # "Europe/Paris" by machine, which a dataset's content hash would carry), and casts and
    # date parts of one are taken in UTC. (Set here: as a connect option it is an
    # extension's, applied after the options that lock the connection down.)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    return con


_CHECKING: list[duckdb.DuckDBPyConnection] = []
_CHECKING_LOCK = threading.Lock()
_CHECKERS = threading.local()


def checker() -> duckdb.DuckDBPyConnection:
    """This thread's connection for checking queries (it parses them, never runs one).

    A cursor of one locked-down database that every thread shares: a DuckDB database costs
    the process 2-4 MB that glibc keeps after it closes, and a server's thread pool has up to
    40 threads, so a connection of its own per thread held 100 MB and more after a burst of
    queries (issue 36; ``bench/server_memory.py``). A cursor costs a few KB.
    """
    cursor: duckdb.DuckDBPyConnection | None = getattr(_CHECKERS, "cursor", None)
    if cursor is None:
        with _CHECKING_LOCK:
            if not _CHECKING:
                _CHECKING.append(open_connection(QueryLimits(memory_limit="64MB", threads=1)))
            cursor = _CHECKING[0].cursor()
        _CHECKERS.cursor = cursor
    return cursor


def rewrite_versions(sql: str) -> str:
    """Turn each ``name@N`` into the quoted identifier ``"name@N"``.

    DuckDB's own tokenizer finds the tokens, so text inside string literals and comments is
    never touched: only an unquoted identifier, immediately followed by ``@`` and then
    immediately by digits (no spaces), is rewritten. The quoted form may also be written by
    hand: ``SELECT * FROM "churn@3"``.
    """
    from loopml.data._duckdb import duckdb

    tokens = duckdb.tokenize(sql)
    edits: list[tuple[int, int, str]] = []
    for (start, kind), (at, at_kind), (num, num_kind) in zip(
        tokens, tokens[1:], tokens[2:], strict=False
    ):
        if kind != duckdb.token_type.identifier or at_kind != duckdb.token_type.operator:
            continue
        if num_kind != duckdb.token_type.numeric_const or sql[at : at + 1] != "@":
            continue
        name = _IDENTIFIER.match(sql, start)
        digits = _DIGITS.match(sql, num)
        if name is None or digits is None or name.end() != at or num != at + 1:
            continue
        edits.append((start, digits.end(), f'"{name.group().lower()}@{digits.group()}"'))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    return sql


def single_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The text of the one ``SELECT`` statement in ``sql``, or ``ValidationError``."""
    from loopml.data._duckdb import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValidationError(
            f"the query does not parse: {exc}", details={"field": "query"}
        ) from exc
    if len(statements) != 1:
        raise ValidationError(
            f"expected exactly one statement, got {len(statements)}: {_READ_ONLY_HINT}",
            details={"field": "query"},
        )
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        # The first word names it as written (DuckDB files INSTALL under LOAD, RESET under SET).
        tokens = duckdb.tokenize(sql)
        word = _IDENTIFIER.match(sql, tokens[0][0]) if tokens else None
        kind = word.group().upper() if word else statement.type.name
        raise ValidationError(
            f"{kind} statements are refused: {_READ_ONLY_HINT}",
            details={"field": "query", "refused": kind, "statement": statement.type.name},
        )
    return _without_final_semicolons(str(statement.query))


def _without_final_semicolons(sql: str) -> str:
    from loopml.data._duckdb import duckdb

    # The text is wrapped in a subquery for paging, where a final ';' would not parse.
    tokens = duckdb.tokenize(sql)
    while tokens and tokens[-1][1] == duckdb.token_type.operator and sql[tokens[-1][0]] == ";":
        sql = sql[: tokens.pop()[0]]
    return sql


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> list[TableRef]:
    """Check that ``sql`` is one safe ``SELECT``; return the tables it references.

    Raises:
        ValidationError: naming the statement, function, file or reference refused.
    """
    single_select(con, sql)
    row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        message = tree.get("error_message", "unknown parser error")
        raise ValidationError(f"the query cannot be checked: {message}: {_READ_ONLY_HINT}")
    ctes: set[str] = set()
    refs: dict[str, TableRef] = {}
    pending: list[dict[str, Any]] = []
    for node in _walk(tree["statements"]):
        for entry in (node.get("cte_map") or {}).get("map", []):
            ctes.add(str(entry.get("key", "")).lower())
        if node.get("type") == "BASE_TABLE":
            pending.append(node)
        elif node.get("type") == "TABLE_FUNCTION":
            _check_table_function(node.get("function") or {})
        elif node.get("class") == "FUNCTION":
            _check_function(str(node.get("function_name", "")))
    for node in pending:
        ref = _table_ref(node, ctes)
        if ref is not None:
            refs[ref.alias] = ref
    return list(refs.values())


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_function(name: str) -> None:
    if name.lower() in REFUSED_FUNCTIONS:
        raise ValidationError(
            f"function {name}() is refused: queries may not read server settings, the "
            "environment, or run SQL text; " + _READ_ONLY_HINT,
            details={"field": "query", "refused": name},
        )


def _check_table_function(function: dict[str, Any]) -> None:
    name = str(function.get("function_name", ""))
    if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
        allowed = ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
        raise ValidationError(
            f"table function {name}() is refused: queries read the project's tables by name, "
            f"never files, URLs or catalogs (allowed table functions: {allowed})",
            details={"field": "query", "refused": name},
        )


def _table_ref(node: dict[str, Any], ctes: set[str]) -> TableRef | None:
    name = str(node.get("table_name", ""))
    if node.get("catalog_name") or node.get("schema_name"):
        qualified = ".".join(
            str(p) for p in (node.get("catalog_name"), node.get("schema_name"), name) if p
        )
        raise ValidationError(
            f"table reference {qualified!r} is refused: reference a project table by its bare "
            "name, such as churn or churn@3",
            details={"field": "query", "refused": qualified},
        )
    if node.get("at_clause"):
        raise ValidationError(
            f"AT (...) on {name!r} is refused: write a past version as {name}@3",
            details={"field": "query", "refused": "AT"},
        )
    lowered = name.lower()
    if lowered in ctes:
        return None
    if TABLE_NAME_PATTERN.fullmatch(lowered):
        return TableRef(lowered)
    versioned = _VERSIONED_REF.fullmatch(lowered)
    if versioned:
        return TableRef(versioned.group(1), int(versioned.group(2)))
    raise ValidationError(
        f"table reference {name[:200]!r} is refused: queries cannot read files or URLs; "
        "reference a project table by name, such as churn or churn@3",
        details={"field": "query", "refused": name[:200]},
    )


MAX_TIMEOUT_S = 300.0
"""The longest a query may be given, in seconds."""


@contextlib.contextmanager
def guarded(con: duckdb.DuckDBPyConnection, timeout_s: float) -> Iterator[None]:
    """Interrupt ``con`` after ``timeout_s`` while the block runs, and turn DuckDB's errors
    (and Arrow's, from a result read as batches) into loopml's.

    Raises:
        QueryTimeoutError: it ran past ``timeout_s``.
        ValidationError: DuckDB refused or failed it (out of memory included).
    """
    from loopml.data._duckdb import duckdb

    timer = threading.Timer(timeout_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        raise _timed_out(timeout_s) from exc
    except duckdb.PermissionException as exc:
        raise ValidationError(
            f"refused by the sandbox: {exc}. Queries read the project's tables by name only",
            details={"field": "query"},
        ) from exc
    except duckdb.Error as exc:
        raise ValidationError(f"the query failed: {exc}", details={"field": "query"}) from exc
    except pa.ArrowException as exc:
        # A batch reader over a running query reports DuckDB's errors as Arrow's.
        if not timer.is_alive():  # it fired: the read was interrupted
            raise _timed_out(timeout_s) from exc
        raise ValidationError(f"the query failed: {exc}", details={"field": "query"}) from exc
    finally:
        timer.cancel()


def _timed_out(timeout_s: float) -> QueryTimeoutError:
    return QueryTimeoutError(
        f"the query ran longer than its time limit of {timeout_s:g} s and was stopped: "
        f"filter or aggregate earlier, or allow more time (timeout_s, at most "
        f"{MAX_TIMEOUT_S:g})",
        details={"timeout_s": timeout_s},
    )


def columns_of(cursor: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """``(name, DuckDB type)`` of each column of an executed query."""
    return [(str(d[0]), str(d[1])) for d in cursor.description or []]


def execute(
    con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Run a checked query on a sandboxed connection, interrupting it after ``timeout_s``.

    Raises:
        QueryTimeoutError: it ran past ``timeout_s``.
        ValidationError: DuckDB refused or failed it (out of memory included).
    """
    with guarded(con, timeout_s):
        cursor = con.execute(sql)
        return cursor.to_arrow_table(), columns_of(cursor)
