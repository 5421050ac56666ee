"""A version's stored reference: read, stored, built once when missing
(``ensure_reference``), or made from a lake table the user names (``reference_from_table``,
which replaces it). What a reference holds and how it is profiled: ``monitor.reference``."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.core.errors import AlreadyExistsError, LoopmlError, NotFoundError, ValidationError
from loopml.core.predictions import parse_table_ref
from loopml.data import lake
from loopml.monitor.calibration import MIN_ROWS as MIN_CALIBRATION_ROWS
from loopml.monitor.reference import (
    MIN_SAMPLE_ROWS,
    REFERENCE_SET,
    TABLE_ROWS,
    Reference,
    ReferenceProfile,
    _calibration,
    _errors,
    _profile_rows,
    build_reference,
)
from loopml.registry.packages import load_version
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, model_versions
from loopml.store import monitor as monitor_rows

log = logging.getLogger("loopml.monitor")


def _table_rows(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: str,
    columns: list[str],
    target: str | None = None,
) -> tuple[pa.Table, str]:
    """The first ``TABLE_ROWS`` rows of the table ``ref`` names (its ``columns``, and the
    label column ``target`` when named), and the ``name@version`` read."""
    name, at = parse_table_ref(ref)
    try:
        at = at if at is not None else lake.open_delta(store, artifacts, project, name).version()
        dataset = lake.read_dataset(store, artifacts, project, name, at)
    except NotFoundError as exc:
        raise NotFoundError(
            f"no reference table {ref!r} in project {project!r}: {exc.message}",
            details={"table": ref},
        ) from exc
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise ValidationError(
            f"table {name}@{at} lacks the model's input columns {missing}: a reference table "
            f"holds every input column of the model's signature ({columns})",
            details={"field": "table", "missing": missing},
        )
    if target is not None and target not in dataset.schema.names:
        raise ValidationError(
            f"table {name}@{at} has no label column {target!r}: the target names the column "
            f"of true labels the calibration is measured on (the table has "
            f"{dataset.schema.names[:20]})",
            details={"field": "target", "missing": [target]},
        )
    wanted = columns + ([target] if target is not None and target not in columns else [])
    rows = dataset.head(TABLE_ROWS, columns=wanted)
    if rows.num_rows < MIN_SAMPLE_ROWS:
        raise ValidationError(
            f"table {name}@{at} has {rows.num_rows} rows: a reference needs at least "
            f"{MIN_SAMPLE_ROWS}",
            details={"field": "table", "rows": rows.num_rows},
        )
    return rows, f"{name}@{at}"


def reference_from_table(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    model: str,
    version: int,
    table: str,
    *,
    actor: str,
    target: str | None = None,
) -> Reference:
    """Build ``model/version``'s reference from a lake table (``name`` or ``name@version``;
    its first ``TABLE_ROWS`` rows) and store it in place of any, with the event
    ``model.version.reference.set``; on any error nothing is stored. With ``target`` (the
    label column in the table) the profile also holds, for a classifier, the calibration
    table of its probabilities on those rows, which the pre-label estimate maps through;
    for a regressor, its errors on them by predicted value, which the estimate reads.

    Raises:
        NotFoundError: no such model version or table (or table version).
        ValidationError: an invalid table reference, a table lacking the model's input
            columns (named) or the ``target`` column, under ``MIN_SAMPLE_ROWS`` rows, or
            values the model refuses.
    """
    with store.session() as session:
        model_versions.get(session, project, model, version)
    with tempfile.TemporaryDirectory(prefix="loopml-reference-") as folder:
        _, loaded = load_version(store, artifacts, project, f"{model}/{version}", Path(folder))
        columns = [c.name for c in loaded.manifest.signature.inputs]
        rows, read = _table_rows(store, artifacts, project, table, columns, target)
        calibration = _calibration(rows, target, loaded, columns)
        errors = _errors(rows, target, loaded, columns)
        profile = _profile_rows(
            loaded, rows, origin="table", calibration=calibration, errors=errors
        )
    source = f"table {read}, first {rows.num_rows} rows"
    if target is not None and loaded.manifest.signature.task == "classification":
        source += (
            f", calibrated on its {target!r} labels"
            if calibration is not None
            else f", not calibrated ({target!r} holds under {MIN_CALIBRATION_ROWS} labels)"
        )
    elif target is not None:
        source += (
            f", errors measured on its {target!r} labels"
            if errors is not None
            else f", errors not measured ({target!r} holds under {MIN_CALIBRATION_ROWS} "
            "numeric labels)"
        )
    reference = Reference(status="ready", source=source, profile=profile)
    with store.session() as session:
        monitor_rows.put_reference(session, project, model, version, **_fields(reference))
        events.append(
            session,
            type=REFERENCE_SET,
            subject=f"{model}/{version}",
            project=project,
            payload={
                "model": model,
                "version": version,
                "table": read,
                "rows": rows.num_rows,
                "target": target,
                "calibrated": calibration is not None,
            },
            actor=actor,
        )
    return reference


def get_reference(store: MetadataStore, project: str, model: str, version: int) -> Reference | None:
    """The stored reference of a version, if one was built."""
    with store.session() as session:
        found = monitor_rows.get_reference(session, project, model, version)
    if found is None:
        return None
    profile = found["profile"] or None
    return Reference(
        status=found["status"],
        reason=found["reason"],
        source=found["source"],
        profile=ReferenceProfile.model_validate(profile) if profile else None,
    )


def save_reference(
    store: MetadataStore,
    project: str,
    model: str,
    version: int,
    reference: Reference,
    *,
    replace: bool = True,
) -> None:
    """Store a version's reference, replacing any unless ``replace`` is off."""
    with store.session() as session:
        monitor_rows.put_reference(
            session, project, model, version, **_fields(reference), replace=replace
        )


def _fields(reference: Reference) -> dict[str, Any]:
    """A reference as its stored row's fields."""
    profile: dict[str, Any] = reference.profile.model_dump() if reference.profile else {}
    return {
        "status": reference.status,
        "reason": reference.reason,
        "source": reference.source,
        "profile": profile,
    }


def ensure_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """The version's reference, built and stored first when it has none yet."""
    found = get_reference(store, project, model, version)
    if found is not None:
        return found
    try:
        reference = build_reference(store, artifacts, project, model, version)
    except LoopmlError as exc:
        reference = Reference(status="off", reason=f"no reference could be built: {exc.message}")
    except Exception as exc:  # a model or dataset the monitor cannot read: say so, go on
        log.exception("building the reference of %s/%s failed", model, version)
        reference = Reference(status="off", reason=f"no reference could be built: {exc}")
    if len(reference.reason) > 500:  # as stored: the first answer reads as the later ones
        reference = reference.model_copy(update={"reason": reference.reason[:500]})
    # Only where none was stored meanwhile: a reference set by hand (a table) while this
    # one was built must not be replaced by it (census run 40: a version's table reference
    # became "off" so, and its drift was never judged).
    with contextlib.suppress(AlreadyExistsError):  # PostgreSQL: another inserted it first
        save_reference(store, project, model, version, reference, replace=False)
    stored = get_reference(store, project, model, version)
    return stored if stored is not None else reference
