"""Lake table housekeeping in the metadata DB: which versions are referenced, and the
commits that compaction, pruning and vacuum add to a table's log.

A run references a table version through its inputs: ``kind='table'`` and
``ref='<project>/<table>@<version>'`` (``loopml.core.housekeeping.table_ref``); a dataset
version references the table versions it was made from (its ``sources``). Vacuum never
frees the files of a referenced version. Model lineage will add its references here too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.housekeeping import TABLE_INPUT_KIND
from loopml.store import events, lake_tables, projects
from loopml.store._checks import check_actor
from loopml.store.orm import DatasetRow, DatasetVersionRow, RunInputRow


def referencing_runs(session: Session, project: str, table: str) -> dict[int, list[str]]:
    """The versions of a table that runs consumed, each with the ids of those runs.

    A ``ref`` whose version is not a number is not a reference to a version and is skipped.
    """
    prefix = f"{project}/{table}@"
    query = select(RunInputRow.run_id, RunInputRow.ref).where(
        RunInputRow.kind == TABLE_INPUT_KIND,
        RunInputRow.ref.startswith(prefix, autoescape=True),
    )
    found: dict[int, list[str]] = {}
    for run_id, ref in session.execute(query).tuples():
        tail = ref[len(prefix) :]
        if tail.isdigit():
            found.setdefault(int(tail), []).append(run_id)
    return found


def referencing_datasets(session: Session, project: str, table: str) -> dict[int, list[str]]:
    """The versions of a table that dataset versions were made from, each with those
    dataset versions (``name@version``)."""
    project_id = projects.get(session, project).id
    query = (
        select(DatasetRow.name, DatasetVersionRow.version, DatasetVersionRow.sources)
        .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
        .where(DatasetVersionRow.project_id == project_id)
    )
    found: dict[int, list[str]] = {}
    # JSON is not portably searchable in SQL; a project's dataset versions are few enough to
    # filter here (one small list per version, never the rows of the data).
    for name, version, sources in session.execute(query).tuples():
        for source in sources or []:
            read = source.get("version") if source.get("table") == table else None
            if isinstance(read, int) and not isinstance(read, bool):
                found.setdefault(read, []).append(f"{name}@{version}")
    return found


def record_housekeeping(
    session: Session,
    project: str,
    name: str,
    *,
    version: int,
    event: str,
    payload: dict[str, Any],
    actor: str,
    row_count: int | None = None,
) -> None:
    """Record the table version after a housekeeping commit and append its ``event``.

    Compaction and vacuum change no rows, so only the version moves (never backwards); a
    prune passes the version's ``row_count`` too. The event is ``table.compacted``,
    ``table.vacuumed`` or ``table.pruned``.
    """
    check_actor(actor)
    row = lake_tables.locked_row(session, project, name)
    if version > row.version:
        row.version = version
        if row_count is not None:
            row.row_count = row_count
        session.flush()
    events.append(session, type=event, subject=name, project=project, payload=payload, actor=actor)
