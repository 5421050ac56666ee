"""Lake tables: the metadata row of each Delta table, and its events.

The row is a cache of the table's Delta log (version, row count, columns) plus what only
loopml knows (description, contract). ``loopml.data.lake`` writes the log first, then
records the commit here; if the process dies in between, the next read reconciles the row
from the log (``record_commit`` with ``reconciled=True``).

A row an ingest creates is pending (``PENDING_VERSION``) until its first commit is recorded:
it is not a table yet, so it is never listed nor found by ``get``, and ``table.created`` is
appended with that first commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.core.lake import PENDING_VERSION, ColumnInfo, LakeTable, validate_table_name
from loopml.store import events, projects
from loopml.store._checks import check_actor, check_text
from loopml.store._errors import add_unique
from loopml.store._named import named_row, named_rows
from loopml.store.orm import LakeTableRow, ProjectRow

MAX_DESCRIPTION = 4000
MAX_TABLES = 10_000


def _to_domain(row: LakeTableRow, project: str) -> LakeTable:
    return LakeTable(
        id=row.id,
        project=project,
        name=row.name,
        description=row.description,
        version=row.version,
        row_count=row.row_count,
        columns=[ColumnInfo.model_validate(c) for c in row.columns or []],
        contract=row.contract,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _require(session: Session, project: str, name: str, pending: bool = False) -> LakeTableRow:
    validate_table_name(name)
    row = named_row(session, LakeTableRow, projects.get(session, project).id, name)
    if row is None or (row.version == PENDING_VERSION and not pending):
        raise NotFoundError(
            f"table {name!r} not found in project {project!r}: ingest a file to create it",
            details={"project": project, "table": name},
        )
    return row


def create(
    session: Session,
    project: str,
    name: str,
    *,
    description: str = "",
    columns: list[ColumnInfo] | None = None,
    actor: str,
    pending: bool = False,
) -> LakeTable:
    """Create a table's row (version -1, no data yet) and append ``table.created``; with
    ``pending``, the row of a table an ingest is creating (see the module's docstring).

    Creating a table whose row is pending makes that row the table's.

    Raises:
        ValidationError: a bad name, description or actor.
        NotFoundError: no such project.
        AlreadyExistsError: the project has a table of that name.
    """
    validate_table_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    project_id = projects.get(session, project).id
    exists = AlreadyExistsError(
        f"table {name!r} already exists in project {project!r}",
        details={"project": project, "table": name},
    )
    found = named_row(session, LakeTableRow, project_id, name, lock=True)
    if found is not None and (pending or found.version != PENDING_VERSION):
        raise exists
    row = found or LakeTableRow(project_id=project_id, name=name, row_count=0)
    row.description = description
    row.version = PENDING_VERSION if pending else -1
    row.columns = [c.model_dump() for c in columns or []]
    if found is None:
        add_unique(session, row, exists)
    else:
        session.flush()
    if not pending:
        events.append(session, type="table.created", subject=name, project=project, actor=actor)
    return _to_domain(row, project)


def locked_row(session: Session, project: str, name: str) -> LakeTableRow:
    """The table's row, locked for update until the transaction ends; ``NotFoundError``."""
    validate_table_name(name)
    project_id = projects.get(session, project).id
    row = named_row(session, LakeTableRow, project_id, name, lock=True)
    if row is None:
        raise NotFoundError(
            f"table {name!r} not found in project {project!r}",
            details={"project": project, "table": name},
        )
    return row


# get and list_ are alike in shape to transforms.py's, and stay each repository's own: the
# lookups are _named's; the domain type, its converter and its not-found message are not.
def get(session: Session, project: str, name: str, *, pending: bool = False) -> LakeTable:
    """The table ``name`` of ``project``; ``NotFoundError`` when there is none. A pending
    row counts only with ``pending`` (for the writers that may complete it)."""
    return _to_domain(_require(session, project, name, pending), project)


def list_(session: Session, project: str) -> list[LakeTable]:
    """A project's tables, by name (never a pending row)."""
    rows = named_rows(session, LakeTableRow, projects.get(session, project).id, MAX_TABLES)
    return [_to_domain(row, project) for row in rows if row.version != PENDING_VERSION]


def pending(session: Session, created_before: datetime | None = None) -> list[LakeTable]:
    """Every project's pending rows (created before ``created_before`` when given)."""
    query = (
        select(LakeTableRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == LakeTableRow.project_id)
        .where(LakeTableRow.version == PENDING_VERSION)
        .order_by(LakeTableRow.created_at)
    )
    if created_before is not None:
        query = query.where(LakeTableRow.created_at < created_before)
    return [_to_domain(row, project) for row, project in session.execute(query)]


def delete_pending(session: Session, project: str, name: str) -> LakeTable | None:
    """Delete the row ``name`` if it is still pending (no event: it never was a table);
    returns what was deleted (its id names the folder the caller frees), else ``None``."""
    row = named_row(session, LakeTableRow, projects.get(session, project).id, name, lock=True)
    if row is None or row.version != PENDING_VERSION:
        return None
    table = _to_domain(row, project)
    session.delete(row)
    session.flush()
    return table


def record_commit(
    session: Session,
    project: str,
    name: str,
    *,
    version: int,
    row_count: int,
    columns: list[ColumnInfo],
    rows: int,
    mode: str,
    actor: str,
    reconciled: bool = False,
    commit_version: int | None = None,
) -> LakeTable:
    """Record a Delta commit on the row and append ``table.appended``.

    The row is locked for the update, and an older version never replaces a newer one
    (two writers may record their commits out of order).

    Args:
        version: the table version after the commit.
        row_count: rows in that version.
        columns: its schema.
        rows: rows the commit added (the event's payload).
        mode: ``append`` or ``overwrite`` (``reconcile`` for commits found in the log).
        reconciled: the commit was found in the log, not made by this process.
        commit_version: the version this commit made, for the event (``version`` if
            omitted; later when others committed in between).
    """
    check_actor(actor)
    row = locked_row(session, project, name)
    if row.version == PENDING_VERSION:
        events.append(session, type="table.created", subject=name, project=project, actor=actor)
    if version > row.version:
        row.version = version
        row.row_count = row_count
        row.columns = [c.model_dump() for c in columns]
        session.flush()
    made = version if commit_version is None else commit_version
    payload: dict[str, Any] = {"rows": rows, "version": made, "mode": mode}
    if reconciled:
        payload["reconciled"] = True
    events.append(
        session, type="table.appended", subject=name, project=project, payload=payload, actor=actor
    )
    return _to_domain(row, project)


def set_contract(
    session: Session, project: str, name: str, contract: dict[str, Any] | None, *, actor: str
) -> LakeTable:
    """Replace a table's validation contract and append ``table.contract_updated``."""
    check_actor(actor)
    row = _require(session, project, name)
    row.contract = contract
    session.flush()
    events.append(
        session, type="table.contract_updated", subject=name, project=project, actor=actor
    )
    return _to_domain(row, project)


def delete(session: Session, project: str, name: str, *, actor: str) -> LakeTable:
    """Delete a table's row and append ``table.deleted``; returns what was deleted (its id
    names the Delta folder the caller frees)."""
    check_actor(actor)
    row = _require(session, project, name)
    table = _to_domain(row, project)
    session.delete(row)
    session.flush()
    events.append(
        session,
        type="table.deleted",
        subject=name,
        project=project,
        payload={"version": table.version, "rows": table.row_count},
        actor=actor,
    )
    return table
