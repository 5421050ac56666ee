"""What MLflow's searches need of SQL: ``LIKE`` with the same meaning on SQLite and
PostgreSQL (SQLite's ``LIKE`` ignores the case of ASCII letters, PostgreSQL's does not;
MLflow's ``LIKE`` is case-sensitive, ``ILIKE`` not: on SQLite a case-sensitive ``LIKE`` is
written as ``GLOB``), comparisons by MLflow's operator names, times in MLflow's whole
milliseconds, and offset page tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, and_, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from loopml.core.errors import ValidationError

MAX_OFFSET = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def like_to_glob(pattern: str) -> str:
    """A ``LIKE`` pattern as the ``GLOB`` pattern matching the same strings."""
    out = []
    for char in pattern:
        out.append({"%": "*", "_": "?"}.get(char) or _GLOB_SPECIAL.get(char, char))
    return "".join(out)


class _CaseSensitiveLike(FunctionElement[bool]):
    type = Boolean()
    name = "case_sensitive_like"
    inherit_cache = True


class _CaseInsensitiveLike(FunctionElement[bool]):
    type = Boolean()
    name = "case_insensitive_like"
    inherit_cache = True


# PostgreSQL: ``ESCAPE ''`` turns the backslash into a plain character, as it is to MLflow's
# users and to SQLite; a pattern ending in one would otherwise be an error (a 5xx).
@compiles(_CaseSensitiveLike)
def _like(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern, _ = list(element.clauses)
    return f"({compiler.process(column, **kw)} LIKE {compiler.process(pattern, **kw)} ESCAPE '')"


@compiles(_CaseSensitiveLike, "sqlite")
def _glob(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, _, glob = list(element.clauses)
    return f"({compiler.process(column, **kw)} GLOB {compiler.process(glob, **kw)})"


@compiles(_CaseInsensitiveLike)
def _ilike(element: _CaseInsensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = list(element.clauses)
    return f"({compiler.process(column, **kw)} ILIKE {compiler.process(pattern, **kw)} ESCAPE '')"


@compiles(_CaseInsensitiveLike, "sqlite")
def _sqlite_ilike(element: _CaseInsensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = list(element.clauses)
    return (
        f"(lower({compiler.process(column, **kw)}) LIKE lower({compiler.process(pattern, **kw)}))"
    )


def like(column: Any, pattern: str, *, insensitive: bool = False) -> ColumnElement[bool]:
    """``column LIKE pattern`` (case-sensitive on every database), or ``ILIKE``; ``%`` and
    ``_`` are the only special characters."""
    if insensitive:
        return _CaseInsensitiveLike(column, pattern)
    return _CaseSensitiveLike(column, pattern, like_to_glob(pattern))


def compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    """``column <op> value`` for ``= != < <= > >= LIKE ILIKE``."""
    if op in ("LIKE", "ILIKE"):
        return like(column, str(value), insensitive=op == "ILIKE")
    found: ColumnElement[bool] = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)
    return found


def parse_page_token(token: str | None) -> int:
    """The row offset a ``next_page_token`` of these searches stands for (0 for none)."""
    if not token:
        return 0
    if not (token.isascii() and token.isdigit() and int(token) <= MAX_OFFSET):
        raise ValidationError(
            f"invalid page_token {token[:40]!r}: pass the next_page_token of the previous page",
            details={"field": "page_token"},
        )
    return int(token)


def compare_millis(column: Any, op: str, ms: int) -> ColumnElement[bool]:
    """A stored time (to the microsecond) against a time in whole milliseconds since the
    epoch, as MLflow's clients read times back (truncated): ``=`` is that millisecond's
    span, and ``<=`` takes the whole of it."""
    start = _EPOCH + timedelta(milliseconds=ms)
    end = start + timedelta(milliseconds=1)
    if op == "=":
        return and_(column >= start, column < end)
    if op == "!=":
        return or_(column < start, column >= end)
    bounds: dict[str, ColumnElement[bool]] = {
        "<": column < start,
        "<=": column < end,
        ">": column >= end,
        ">=": column >= start,
    }
    return bounds[op]
