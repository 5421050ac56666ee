"""Transforms: their definitions, their runs (each with its lineage), and their events.

A run is recorded in the same transaction as the definition change it carries and its
``transform.applied`` event: either all three are there, or none is. The table write comes
before that transaction (``loopml.data.transforms``), so a failed write records nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from loopml.core.errors import AlreadyExistsError, ValidationError
from loopml.core.lake import WriteMode, validate_table_name, validate_write_mode
from loopml.core.transforms import (
    CURSOR_PATTERN,
    TableVersion,
    Transform,
    TransformRun,
    transform_not_found,
    validate_description,
    validate_output_table,
    validate_sql_text,
    validate_transform_name,
)
from loopml.core.types import Page
from loopml.store import events, projects
from loopml.store._checks import check_actor, check_limit
from loopml.store._errors import add_unique
from loopml.store._named import named_row, named_rows
from loopml.store.orm import TransformRow, TransformRunRow

MAX_TRANSFORMS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_domain(row: TransformRow, project: str) -> Transform:
    return Transform(
        id=row.id,
        project=project,
        name=row.name,
        description=row.description,
        sql=row.sql,
        into_table=row.into_table,
        mode=validate_write_mode(row.mode),
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _run_to_domain(row: TransformRunRow, project: str, transform: str) -> TransformRun:
    return TransformRun(
        id=row.id,
        project=project,
        transform=transform,
        revision=row.revision,
        sql=row.sql,
        inputs=[TableVersion.model_validate(i) for i in row.inputs or []],
        output_table=row.output_table,
        output_version=row.output_version,
        rows=row.rows,
        actor=row.actor,
        created_at=row.created_at,
    )


def _require(session: Session, project: str, name: str, *, lock: bool = False) -> TransformRow:
    row = named_row(session, TransformRow, projects.get(session, project).id, name, lock=lock)
    if row is None:
        raise transform_not_found(project, name)
    return row


# find, get and list_ are alike in shape to lake_tables.py's, and stay each repository's own
# for the reasons given there.
def find(session: Session, project: str, name: str) -> Transform | None:
    """The transform ``name`` of ``project``, or ``None``; ``NotFoundError`` for no project."""
    row = named_row(session, TransformRow, projects.get(session, project).id, name)
    return None if row is None else _to_domain(row, project)


def get(session: Session, project: str, name: str) -> Transform:
    """The transform ``name`` of ``project``; ``NotFoundError`` when there is none."""
    return _to_domain(_require(session, project, name), project)


def list_(session: Session, project: str) -> list[Transform]:
    """A project's transforms, by name."""
    rows = named_rows(session, TransformRow, projects.get(session, project).id, MAX_TRANSFORMS)
    return [_to_domain(row, project) for row in rows]


def save(
    session: Session,
    project: str,
    name: str,
    *,
    sql: str | None = None,
    into_table: str | None = None,
    mode: WriteMode | None = None,
    description: str | None = None,
    actor: str,
) -> Transform:
    """Create the transform, or change the fields given (``None`` keeps a field).

    A new transform needs ``sql`` and ``into_table`` (``mode`` defaults to ``overwrite``)
    and starts at revision 1. A change of ``sql``, ``into_table`` or ``mode`` adds one to the
    revision; a new description alone does not. Any change appends ``transform.defined``.
    The row is locked until the transaction ends, so concurrent changes each get their own
    revision.

    Raises:
        ValidationError: a bad name, SQL text, table, mode, description or actor, or a new
            transform without ``sql`` or ``into_table``.
        NotFoundError: no such project.
    """
    _check_fields(name, sql, into_table, mode, description, actor)
    project_id = projects.get(session, project).id
    row = named_row(session, TransformRow, project_id, name, lock=True)
    if row is None:
        return _create(
            session, project, project_id, name, sql, into_table, mode, description, actor
        )
    wanted = {"sql": sql, "into_table": into_table, "mode": mode}
    changed = [f for f, v in wanted.items() if v is not None and getattr(row, f) != v]
    if description is not None and row.description != description:
        row.description = description
        changed.append("description")
    if not changed:
        return _to_domain(row, project)
    for field in changed:
        if field != "description":
            setattr(row, field, wanted[field])
    if set(changed) - {"description"}:
        row.revision += 1
    session.flush()
    _defined(session, project, row, changed, actor)
    return _to_domain(row, project)


def _check_fields(
    name: str,
    sql: str | None,
    into_table: str | None,
    mode: str | None,
    description: str | None,
    actor: str,
) -> None:
    validate_transform_name(name)
    check_actor(actor)
    if sql is not None:
        validate_sql_text(sql)
    if into_table is not None:
        validate_output_table(into_table)
    if mode is not None:
        validate_write_mode(mode)
    if description is not None:
        validate_description(description)


def _create(
    session: Session,
    project: str,
    project_id: str,
    name: str,
    sql: str | None,
    into_table: str | None,
    mode: WriteMode | None,
    description: str | None,
    actor: str,
) -> Transform:
    if sql is None or into_table is None:
        missing = " and ".join(f for f, v in (("sql", sql), ("into", into_table)) if v is None)
        raise ValidationError(
            f"transform {name!r} does not exist yet, so it needs {missing}: give the SELECT "
            "and the table to write, e.g. --sql 'SELECT ...' --into daily_sales",
            details={"field": missing.split(" ")[0], "transform": name},
        )
    row = TransformRow(
        project_id=project_id,
        name=name,
        description=description or "",
        sql=sql,
        into_table=into_table,
        mode=mode or "overwrite",
        revision=1,
    )
    exists = AlreadyExistsError(
        f"transform {name!r} was created concurrently in project {project!r}; retry",
        details={"project": project, "transform": name},
    )
    add_unique(session, row, exists)
    _defined(session, project, row, ["created"], actor)
    return _to_domain(row, project)


def _defined(
    session: Session, project: str, row: TransformRow, changed: list[str], actor: str
) -> None:
    payload = {
        "revision": row.revision,
        "changed": changed,
        "into": row.into_table,
        "mode": row.mode,
    }
    events.append(
        session,
        type="transform.defined",
        subject=row.name,
        project=project,
        payload=payload,
        actor=actor,
    )


def record_run(
    session: Session,
    project: str,
    name: str,
    *,
    revision: int,
    sql: str,
    inputs: list[TableVersion],
    output_table: str,
    output_version: int,
    rows: int,
    actor: str,
) -> TransformRun:
    """Record one application of the transform and append ``transform.applied``.

    Call it in the transaction that saved the definition the run used (``save``), so the
    definition change, the run and its event commit together.

    Raises:
        NotFoundError: no such project or transform.
    """
    check_actor(actor)
    validate_table_name(output_table)
    row = _require(session, project, name)
    run = TransformRunRow(
        transform_id=row.id,
        project_id=row.project_id,
        revision=revision,
        sql=sql,
        inputs=[i.model_dump() for i in inputs],
        output_table=output_table,
        output_version=output_version,
        rows=rows,
        actor=actor,
    )
    session.add(run)
    session.flush()
    payload: dict[str, Any] = {
        "run": run.id,
        "revision": revision,
        "inputs": [str(i) for i in inputs],
        "output": f"{output_table}@{output_version}",
        "rows": rows,
    }
    events.append(
        session,
        type="transform.applied",
        subject=name,
        project=project,
        payload=payload,
        actor=actor,
    )
    return _run_to_domain(run, project, name)


def _cursor(row: TransformRunRow) -> str:
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{row.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor", "pattern": CURSOR_PATTERN.pattern},
        )
    micros, last_id = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), last_id


def runs(
    session: Session, project: str, name: str, *, limit: int = 100, cursor: str | None = None
) -> Page[TransformRun]:
    """A transform's runs, newest first, ``limit`` (1 to 1000) at a time.

    Raises:
        NotFoundError: no such project or transform.
        ValidationError: a bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    transform = _require(session, project, name)
    query = select(TransformRunRow).where(TransformRunRow.transform_id == transform.id)
    if cursor is not None:
        at, last_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                TransformRunRow.created_at < at,
                and_(TransformRunRow.created_at == at, TransformRunRow.id < last_id),
            )
        )
    order = (TransformRunRow.created_at.desc(), TransformRunRow.id.desc())
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    items = [_run_to_domain(r, project, name) for r in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page[TransformRun](items=items, next_cursor=next_cursor)


def latest_run_into(
    session: Session, project: str, table: str, *, at_most: int, since: datetime
) -> TransformRun | None:
    """The run that wrote the newest version of ``table`` up to ``at_most``, or ``None``.

    Only runs recorded at or after ``since`` count: pass the table's creation time, so a run
    into an earlier table of the same name (deleted since) is never taken for this one's.
    """
    project_id = projects.get(session, project).id
    query = (
        select(TransformRunRow, TransformRow.name)
        .join(TransformRow, TransformRow.id == TransformRunRow.transform_id)
        .where(
            TransformRunRow.project_id == project_id,
            TransformRunRow.output_table == table,
            TransformRunRow.output_version <= at_most,
            TransformRunRow.created_at >= since,
        )
        .order_by(TransformRunRow.output_version.desc(), TransformRunRow.created_at.desc())
        .limit(1)
    )
    found = session.execute(query).first()
    return None if found is None else _run_to_domain(found[0], project, found[1])


def delete(session: Session, project: str, name: str, *, actor: str) -> Transform:
    """Delete a transform and its runs, and append ``transform.deleted``; the tables it
    wrote stay. Returns what was deleted."""
    check_actor(actor)
    row = _require(session, project, name)
    transform = _to_domain(row, project)
    session.delete(row)
    session.flush()
    events.append(
        session,
        type="transform.deleted",
        subject=name,
        project=project,
        payload={"revision": transform.revision, "into": transform.into_table},
        actor=actor,
    )
    return transform
