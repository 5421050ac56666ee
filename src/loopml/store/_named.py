"""A project's records known by their name (a table, a transform, a codeset, a feature view,
a deployment, a registered model): one by its name, all of them in name order, a page of them
after a name. Each repository says what a missing one means, in its own words."""

from __future__ import annotations

import re
from typing import ClassVar, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from loopml.core.errors import ValidationError


class _Named(Protocol):
    project_id: ClassVar[InstrumentedAttribute[str]]
    name: ClassVar[InstrumentedAttribute[str]]


class _Numbered(Protocol):
    version: ClassVar[InstrumentedAttribute[int]]


R = TypeVar("R", bound=_Named)
V = TypeVar("V", bound=_Numbered)


def named_row(
    session: Session, model: type[R], project_id: str, name: str, *, lock: bool = False
) -> R | None:
    """The ``model`` row called ``name`` in the project, locked for update with ``lock``."""
    query = select(model).where(model.project_id == project_id, model.name == name)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def version_row(
    session: Session,
    model: type[V],
    parent: InstrumentedAttribute[str],
    parent_id: str,
    version: int,
) -> V | None:
    """Version ``version`` of the record whose id is ``parent_id`` (``parent`` is the
    version's column holding it)."""
    query = select(model).where(parent == parent_id, model.version == version)
    return session.scalars(query).one_or_none()


def named_rows(session: Session, model: type[R], project_id: str, limit: int) -> list[R]:
    """The project's first ``limit`` ``model`` rows, by name."""
    query = select(model).where(model.project_id == project_id).order_by(model.name).limit(limit)
    return list(session.scalars(query))


def name_page(
    session: Session,
    model: type[R],
    project_id: str,
    *,
    limit: int,
    cursor: str | None,
    pattern: re.Pattern[str],
) -> tuple[list[R], str | None]:
    """The project's first ``limit`` ``model`` rows by name after ``cursor`` (the previous
    page's ``next_cursor``, a name ``pattern`` accepts), and the next page's cursor: the last
    name, when more follow."""
    query = (
        select(model).where(model.project_id == project_id).order_by(model.name).limit(limit + 1)
    )
    if cursor is not None:
        if not pattern.fullmatch(cursor):
            raise ValidationError(
                f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
                details={"field": "cursor"},
            )
        query = query.where(model.name > cursor)
    rows = list(session.scalars(query))
    return rows[:limit], rows[limit - 1].name if len(rows) > limit else None
