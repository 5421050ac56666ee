"""What the registry reads of other tables: logged models, runs, run inputs, project ids.

Lineage runs both ways in a fixed number of queries, whatever the number of rows:
upstream, a version -> its run -> the run's inputs; downstream, an input (a dataset
snapshot) -> the runs that consumed it -> the versions built from those runs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.keys import validate_key
from loopml.core.registry import InputLineage, LineageInput, ModelVersion, RunSummary
from loopml.store._checks import check_text
from loopml.store._registry import (
    VersionRecord,
    chunks,
    versions_query,
    versions_to_domain,
)
from loopml.store.orm import (
    LoggedModelRow,
    ModelVersionRow,
    ProjectRow,
    RegisteredModelRow,
    RunInputRow,
    RunRow,
)
from loopml.store.project_lookup import project_row

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_LINEAGE_RUNS = 1000


@dataclass(frozen=True)
class LoggedModelInfo:
    """What the registry needs of a logged model: where its package is and its anchor hash."""

    id: str
    project_id: str
    run_id: str
    path: str
    manifest_sha256: str


def find_logged_model(session: Session, project: str, run_id: str, path: str) -> LoggedModelInfo:
    """The model run ``run_id`` of ``project`` logged at ``path``.

    Raises:
        NotFoundError: no such run in the project, or it logged no model at ``path``.
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValidationError(
            f"invalid run id {repr(run_id)[:80]}: expected the 32 lowercase hex characters of "
            "a run's id",
            details={"field": "run_id"},
        )
    path = validate_key(path)
    proj = project_row(session, project)
    run = session.get(RunRow, run_id)
    if run is None or run.project_id != proj.id:
        raise NotFoundError(
            f"run {run_id!r} not found in project {project!r}",
            details={"project": project, "run_id": run_id},
        )
    row = session.scalars(
        select(LoggedModelRow).where(
            LoggedModelRow.run_id == run_id,
            LoggedModelRow.path == path,
            # A package the server's converter is still making is no model to register.
            LoggedModelRow.format != "packaging",
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"run {run_id!r} logged no model at path {path!r}: log one there first, or pass "
            "the path it was logged at",
            details={"run_id": run_id, "path": path},
        )
    return LoggedModelInfo(row.id, proj.id, run_id, path, row.manifest_sha256)


def logged_model(session: Session, logged_model_id: str) -> LoggedModelInfo:
    """Where the package of a logged model is, by the id a model version records.

    Raises:
        NotFoundError: no such logged model (its run was deleted).
    """
    row = session.get(LoggedModelRow, logged_model_id)
    run = None if row is None else session.get(RunRow, row.run_id)
    if row is None or run is None:
        raise NotFoundError(
            f"logged model {logged_model_id!r} not found",
            details={"logged_model_id": logged_model_id},
        )
    return LoggedModelInfo(row.id, run.project_id, row.run_id, row.path, row.manifest_sha256)


def package_paths(
    session: Session, logged_model_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """The run and folder of each logged model, by id, in one query a thousand ids; an id
    with no logged model (its run was deleted) is left out."""
    found: dict[str, tuple[str, str]] = {}
    ids = sorted(set(logged_model_ids))
    for start in range(0, len(ids), 1000):
        query = select(LoggedModelRow.id, LoggedModelRow.run_id, LoggedModelRow.path).where(
            LoggedModelRow.id.in_(ids[start : start + 1000])
        )
        found.update({id_: (run_id, path) for id_, run_id, path in session.execute(query)})
    return found


def _run_summary(row: RunRow) -> RunSummary:
    return RunSummary(
        id=row.id,
        name=row.name,
        status=row.status,
        experiment_id=row.experiment_id,
        start_time=row.start_time,
        end_time=row.end_time,
    )


def run_and_inputs(
    session: Session, version: ModelVersion
) -> tuple[RunSummary, list[LineageInput]]:
    """The run ``version`` was built from, and what that run consumed (2 queries).

    The run always exists: a version's run cannot be deleted (``ON DELETE RESTRICT``).
    """
    run = session.get(RunRow, version.run_id)
    if run is None:  # pragma: no cover - prevented by the foreign key
        raise NotFoundError(f"run {version.run_id!r} of {version.model}/{version.version} is gone")
    inputs = session.scalars(
        select(RunInputRow)
        .where(RunInputRow.run_id == run.id)
        .order_by(RunInputRow.kind, RunInputRow.ref)
    )
    found = [LineageInput(kind=i.kind, ref=i.ref, details=i.details or {}) for i in inputs]
    return _run_summary(run), found


def input_lineage(session: Session, project: str, kind: str, ref: str) -> InputLineage:
    """The runs of ``project`` that consumed input ``kind``/``ref``, oldest first, and the
    versions built from them (at most ``MAX_LINEAGE_RUNS`` runs).

    Raises:
        ValidationError: ``kind`` or ``ref`` is empty or too long.
        NotFoundError: no such project.
    """
    check_text("input_kind", kind, max_length=50)
    check_text("input_ref", ref, max_length=300)
    proj = project_row(session, project)
    runs = session.scalars(
        select(RunRow)
        .join(RunInputRow, RunInputRow.run_id == RunRow.id)
        .where(RunInputRow.kind == kind, RunInputRow.ref == ref, RunRow.project_id == proj.id)
        .order_by(RunRow.start_time, RunRow.id)
        .limit(MAX_LINEAGE_RUNS)
    ).all()
    run_ids = [run.id for run in runs]
    records: list[VersionRecord] = []
    for part in chunks(run_ids):
        query = versions_query().where(ModelVersionRow.run_id.in_(part))
        records.extend(session.execute(query).tuples().all())
    records.sort(key=lambda r: (r[1], r[0].version))
    return InputLineage(
        input_kind=kind,
        input_ref=ref,
        runs=[_run_summary(run) for run in runs],
        versions=versions_to_domain(session, records),
    )


def existing_projects(session: Session, project_ids: Sequence[str]) -> set[str]:
    """Which of ``project_ids`` still exist (for garbage collection)."""
    found: set[str] = set()
    for part in chunks(project_ids):
        found.update(session.scalars(select(ProjectRow.id).where(ProjectRow.id.in_(part))))
    return found


def existing_runs(session: Session, run_ids: Sequence[str]) -> dict[str, str]:
    """Which of ``run_ids`` still exist, each mapped to its project id (for garbage collection)."""
    found: dict[str, str] = {}
    for part in chunks(run_ids):
        rows = session.execute(select(RunRow.id, RunRow.project_id).where(RunRow.id.in_(part)))
        found.update(rows.tuples().all())
    return found


def versions_of_run(session: Session, project: str, run_id: str) -> list[ModelVersion]:
    """The versions of ``project`` registered from run ``run_id``, by model and number.

    Raises:
        NotFoundError: no such project.
    """
    proj = project_row(session, project)
    query = versions_query().where(
        ModelVersionRow.run_id == run_id, RegisteredModelRow.project_id == proj.id
    )
    records = list(session.execute(query.limit(MAX_LINEAGE_RUNS)).tuples().all())
    records.sort(key=lambda r: (r[1], r[0].version))
    return versions_to_domain(session, records)
