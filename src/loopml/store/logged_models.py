"""Models logged by runs: a package under the run's artifacts, anchored by its manifest hash.

A logged model that a registered model version points at cannot be deleted (``RESTRICT``);
neither can its run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import AlreadyExistsError, NotFoundError, ValidationError
from loopml.core.keys import validate_key
from loopml.core.registry import VersionStatus
from loopml.core.runs import LoggedModel
from loopml.store import runs
from loopml.store._checks import check_text
from loopml.store._errors import add_unique
from loopml.store.orm import ExperimentRow, LoggedModelRow, ModelVersionRow, RunRow

MAX_JSON_BYTES = 256 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _to_domain(row: LoggedModelRow) -> LoggedModel:
    return LoggedModel(
        id=row.id,
        run_id=row.run_id,
        path=row.path,
        flavor=row.flavor,
        format=row.format,
        manifest_sha256=row.manifest_sha256,
        signature=row.signature,
        summary=row.summary,
        created_at=row.created_at,
    )


def _check_json(field: str, value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid {field}: expected a JSON object ({exc})") from exc
    if size > MAX_JSON_BYTES:
        raise ValidationError(
            f"{field} is {size} bytes as JSON, over the limit of {MAX_JSON_BYTES}",
            details={"field": field, "max_bytes": MAX_JSON_BYTES},
        )
    return value


def record(
    session: Session,
    project: str,
    run_id: str,
    *,
    path: str,
    flavor: str,
    format: str,
    manifest_sha256: str,
    signature: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> LoggedModel:
    """Record that a run logged a model package at ``path`` (relative to its artifacts).

    Raises:
        NotFoundError: no such run in the project.
        ValidationError: a bad path, flavor, format, hash, signature or summary.
        AlreadyExistsError: the run already logged a model at ``path``.
    """
    runs.require(session, project, run_id)
    validate_key(path)
    check_text("path", path, max_length=500)
    check_text("flavor", flavor, max_length=50)
    check_text("format", format, max_length=20)
    if not _SHA256.fullmatch(manifest_sha256):
        raise ValidationError(
            f"invalid manifest_sha256 {manifest_sha256[:80]!r}: expected 64 lowercase hex "
            "characters",
            details={"field": "manifest_sha256"},
        )
    row = LoggedModelRow(
        run_id=run_id,
        path=path,
        flavor=flavor,
        format=format,
        manifest_sha256=manifest_sha256,
        signature=_check_json("signature", signature),
        summary=_check_json("summary", summary or {}),
    )
    taken = AlreadyExistsError(
        f"run {run_id} already logged a model at {path!r}; log it under another path",
        details={"run_id": run_id, "path": path},
    )
    add_unique(session, row, taken)
    return _to_domain(row)


# The format of a package the server's converter is still making (``reserve``): such a
# record names no files yet, so lookups by run, path or id do not find it.
PACKAGING_FORMAT = "packaging"


def reserve(
    session: Session, project: str, run_id: str, *, path: str, summary: dict[str, Any]
) -> str:
    """Record the package the server's converter will write at ``path`` of run ``run_id``
    (format ``packaging``, no manifest yet), so a PACKAGING version can name it; returns its
    id. ``complete`` fills it in once the package exists.

    Raises:
        NotFoundError: no such run in the project.
        AlreadyExistsError: the run has a model at ``path``.
    """
    runs.require(session, project, run_id)
    row = LoggedModelRow(
        run_id=run_id,
        path=validate_key(path),
        flavor="",
        format=PACKAGING_FORMAT,
        manifest_sha256="",
        signature={},
        summary=_check_json("summary", summary),
    )
    taken = AlreadyExistsError(
        f"run {run_id} already logged a model at {path!r}", details={"run_id": run_id}
    )
    add_unique(session, row, taken)
    return row.id


@dataclass(frozen=True)
class PackagingClaim:
    """Who is making a package the converter reserved: ``packager`` (``host:pid`` of the
    server), when that server last said it still was (``seen``; ``None`` on records older
    than the heartbeat), the MLflow model it is made from, and whether the files and the
    manifest are already recorded (``completed``: only the verdict is missing)."""

    packager: str
    seen: datetime | None
    mlflow_source: str
    completed: bool


def packaging_claim(session: Session, model_id: str) -> PackagingClaim | None:
    """The claim on the package record ``model_id`` of a PACKAGING version; ``None`` if gone."""
    row = session.get(LoggedModelRow, model_id)
    if row is None:
        return None
    summary = row.summary or {}
    seen = summary.get("packager_seen")
    return PackagingClaim(
        packager=str(summary.get("packager", "")),
        seen=datetime.fromisoformat(seen) if isinstance(seen, str) else None,
        mlflow_source=str(summary.get("mlflow_source", "")),
        completed=row.format != PACKAGING_FORMAT,
    )


def claim_packaging(
    session: Session, model_id: str, *, expected: str, packager: str, now: datetime
) -> bool:
    """Make ``packager`` the maker of package record ``model_id`` if ``expected`` still is
    (the row is locked, so of two servers taking over the same record one wins), and mark
    it seen ``now``; ``expected == packager`` is the maker saying it still is. Returns
    whether the record is now ``packager``'s."""
    row = session.scalars(
        select(LoggedModelRow).where(LoggedModelRow.id == model_id).with_for_update()
    ).one_or_none()
    if row is None or (row.summary or {}).get("packager", "") != expected:
        return False
    row.summary = {**row.summary, "packager": packager, "packager_seen": now.isoformat()}
    session.flush()
    return True


def touch_packaging(session: Session, packager: str, now: datetime) -> int:
    """Mark seen ``now`` the package records of PACKAGING versions that ``packager`` is
    making; its housekeeping says so every round. Returns how many."""
    query = (
        select(LoggedModelRow)
        .join(ModelVersionRow, ModelVersionRow.logged_model_id == LoggedModelRow.id)
        .where(ModelVersionRow.status == VersionStatus.PACKAGING.value)
    )
    touched = 0
    for row in session.scalars(query):
        if (row.summary or {}).get("packager") == packager:
            row.summary = {**row.summary, "packager_seen": now.isoformat()}
            touched += 1
    session.flush()
    return touched


def complete(
    session: Session,
    model_id: str,
    *,
    flavor: str,
    format: str,
    manifest_sha256: str,
    signature: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    """Fill in a package ``reserve`` recorded, now that its files exist."""
    check_text("flavor", flavor, max_length=50)
    check_text("format", format, max_length=20)
    if not _SHA256.fullmatch(manifest_sha256):
        raise ValidationError(f"invalid manifest_sha256 {manifest_sha256[:80]!r}")
    row = session.get(LoggedModelRow, model_id)
    if row is None or row.format != PACKAGING_FORMAT:
        raise NotFoundError(f"no package being made with id {model_id!r}")
    row.flavor, row.format, row.manifest_sha256 = flavor, format, manifest_sha256
    row.signature = _check_json("signature", signature)
    row.summary = _check_json("summary", {**row.summary, **summary})
    session.flush()


def list_for_run(session: Session, project: str, run_id: str) -> list[LoggedModel]:
    """The models a run logged, by path.

    Raises:
        NotFoundError: no such run in the project.
    """
    runs.require(session, project, run_id)
    query = select(LoggedModelRow).where(
        LoggedModelRow.run_id == run_id, LoggedModelRow.format != PACKAGING_FORMAT
    )
    return [_to_domain(row) for row in session.scalars(query.order_by(LoggedModelRow.path))]


def get(session: Session, project: str, model_id: str) -> LoggedModel:
    """One logged model by id, if its run belongs to ``project``.

    Raises:
        NotFoundError: no such logged model in the project.
    """
    row = session.get(LoggedModelRow, model_id) if len(model_id) == 32 else None
    if row is not None and row.format == PACKAGING_FORMAT:
        row = None
    if row is None or session.execute(runs.select_run(project, row.run_id)).first() is None:
        raise NotFoundError(
            f"logged model {model_id[:40]!r} not found in project {project!r}",
            details={"project": project, "logged_model_id": model_id[:40]},
        )
    return _to_domain(row)


def list_by_path(
    session: Session, project: str, experiment_ids: list[str], path: str, *, limit: int = 1000
) -> list[tuple[str, LoggedModel]]:
    """The models runs of these experiments (all, when empty) logged at ``path``, newest
    first, each with its run's experiment name."""
    query = (
        select(LoggedModelRow, ExperimentRow.name)
        .join(RunRow, RunRow.id == LoggedModelRow.run_id)
        .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
        .where(RunRow.project_id == runs.project_id_of(project), LoggedModelRow.path == path)
        .where(LoggedModelRow.format != PACKAGING_FORMAT)
        .order_by(LoggedModelRow.created_at.desc())
        .limit(limit)
    )
    if experiment_ids:
        query = query.where(RunRow.experiment_id.in_(experiment_ids))
    return [(name, _to_domain(row)) for row, name in session.execute(query).tuples()]
