"""Registering, resolving, aliasing and deleting model versions: the registry's services.

Each service takes its backends as arguments (a ``MetadataStore``, an ``ArtifactStore``)
and opens its own transactions; ``move_alias`` runs in its caller's (``stages`` moves
several aliases in one).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from sqlalchemy.orm import Session

from loopml.core import layout, promotion
from loopml.core.errors import AlreadyExistsError, LoopmlError, NotFoundError
from loopml.core.gate import PROTECTED_ALIAS
from loopml.core.refs import ModelRef, validate_alias, validate_model_name
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.registry._verify import VerificationFailed, verify_package
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, check_actor, gates, lineage, model_versions, models

log = logging.getLogger("loopml.registry")

SWEEPER_ACTOR = "system"
_INTERRUPTED = "registration was interrupted before its artifacts were verified; register again"


def _ensure_model(store: MetadataStore, project: str, name: str, actor: str) -> None:
    # Two first registrations of a new model race to create it; the loser's insert fails
    # on the unique name and it simply uses the winner's model.
    with contextlib.suppress(AlreadyExistsError), store.session() as session:
        models.create(session, project, name, actor=actor)


def _files_verdict(
    artifacts: ArtifactStore, prefix: str, manifest_sha256: str
) -> tuple[VersionStatus, str]:
    """READY, or FAILED naming what is wrong with the package's files; raises what kept
    them from being read."""
    try:
        verify_package(artifacts, prefix, manifest_sha256)
    except VerificationFailed as exc:
        return VersionStatus.FAILED, str(exc)
    return VersionStatus.READY, ""


def _verdict(
    artifacts: ArtifactStore, prefix: str, manifest_sha256: str
) -> tuple[VersionStatus, str]:
    try:
        return _files_verdict(artifacts, prefix, manifest_sha256)
    except LoopmlError as exc:
        return VersionStatus.FAILED, f"artifacts could not be verified ({exc.message}); retry"
    except Exception:
        log.exception("verifying the package under %s failed unexpectedly", prefix)
        return VersionStatus.FAILED, "internal error while verifying the artifacts; see the log"


def register_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    *,
    project: str,
    model_name: str,
    run_id: str,
    path: str = "model",
    description: str = "",
    actor: str,
) -> ModelVersion:
    """Register the model run ``run_id`` logged at ``path`` as the next version of a model.

    The model is created if missing. The version is inserted PENDING, then its package is
    verified in the artifact store (manifest hash against the one the run recorded, then
    every listed file's size and SHA-256, streamed): READY when all of it matches, FAILED
    with a message naming the file otherwise. A registration that dies midway is never READY:
    any error during verification settles it FAILED, and one killed outright stays PENDING
    until the housekeeping verifies it again (``settle_stale_registrations``, after two
    minutes) or, failing that, ``fail_stale_registrations`` fails it after an hour.

    Returns:
        The settled version (READY or FAILED): check ``status`` and ``status_message``.

    Raises:
        ValidationError: a bad model name, run id, path or description.
        NotFoundError: no such project or run, or the run logged no model at ``path``.
    """
    validate_model_name(model_name)
    with store.session() as session:
        logged = lineage.find_logged_model(session, project, run_id, path)
    _ensure_model(store, project, model_name, actor)
    with store.session() as session:
        version = model_versions.create(
            session, project, model_name, logged, description=description, actor=actor
        )
    status, message = VersionStatus.FAILED, _INTERRUPTED
    try:
        prefix = f"{layout.run_artifacts_prefix(logged.project_id, logged.run_id)}/{logged.path}"
        status, message = _verdict(artifacts, prefix, logged.manifest_sha256)
    finally:
        with store.session() as session:
            settled = model_versions.set_status(
                session, project, model_name, version.version, status, message, actor=actor
            )
    return settled


def resolve(store: MetadataStore, project: str, ref: ModelRef | str) -> ModelVersion:
    """The version ``ref`` names in ``project`` (``churn``, ``churn/3``, ``churn@champion``).

    Raises:
        ValidationError: ``ref`` does not follow the grammar (see ``ModelRef``).
        NotFoundError: the model, version or alias is missing; the message says which.
    """
    with store.session() as session:
        return model_versions.resolve(session, project, ref)


def set_alias(
    store: MetadataStore,
    project: str,
    model: str,
    alias: str,
    version: int,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
) -> ModelVersion:
    """Point ``alias`` at a READY ``version`` (emits ``model.alias.set`` with from/to).

    ``champion`` moves only to a version the gate passed, unless ``force`` with a
    ``reason`` (audited as ``model.promotion.forced``); the rules are
    ``core.promotion.decide_alias_move``.

    Raises:
        ConflictError: the version is not READY.
        GateRequiredError: ``champion`` to a version the gate has not passed, unforced.
        ValidationError: a bad alias or actor, or ``force`` without a reason.
        NotFoundError: no such project, model or version.
    """
    with store.session() as session:
        return move_alias(
            session, project, model, alias, version, actor=actor, force=force, reason=reason
        )


def move_alias(
    session: Session,
    project: str,
    model: str,
    alias: str,
    version: int,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
) -> ModelVersion:
    """``set_alias`` inside the caller's transaction (``transition_stage`` moves several).

    The model row is locked before the version and its verdict are read, and the move is
    written in the same transaction: a concurrent move of the model's aliases waits, so the
    rules judge what the move then records.
    """
    validate_alias(alias)
    check_actor(actor)
    reason = promotion.checked_reason(force, reason)
    models.lock(session, project, model)
    target = model_versions.get(session, project, model, version)
    verdict = gates.latest_verdict(session, target.id) if alias == PROTECTED_ALIAS else None
    move = promotion.decide_alias_move(
        model=model,
        alias=alias,
        version=version,
        status=target.status,
        status_message=target.status_message,
        verdict=verdict,
        force=force,
        reason=reason,
    )
    return models.move_alias(session, project, model, move, actor=actor)


def remove_alias(store: MetadataStore, project: str, model: str, alias: str, *, actor: str) -> None:
    """Remove ``alias`` (emits ``model.alias.removed``)."""
    with store.session() as session:
        models.delete_alias(session, project, model, alias, actor=actor)


def delete_version(
    store: MetadataStore, project: str, model: str, version: int, *, actor: str
) -> None:
    """Delete a version; refused (``ConflictError`` naming the alias) while an alias points at
    it. The run and its artifacts stay: they belong to the run."""
    with store.session() as session:
        model_versions.delete(session, project, model, version, actor=actor)


def delete_model(
    store: MetadataStore, project: str, name: str, *, force: bool = False, actor: str
) -> int:
    """Delete a model; with versions only if ``force`` (they, their tags and aliases go too).

    Returns:
        How many versions were deleted with it.
    """
    with store.session() as session:
        return models.delete(session, project, name, force=force, actor=actor)


def settle_stale_registrations(
    store: MetadataStore,
    artifacts: ArtifactStore,
    *,
    older_than: timedelta = timedelta(minutes=2),
) -> int:
    """Verify again the versions left PENDING longer than ``older_than`` (their registering
    process was killed between the insert and the verdict) and settle each READY or FAILED,
    as its registration would have: the verdict depends only on the run's files, so any
    server may give it, and the first verdict stands (``set_status``). A package that cannot
    be read now is left PENDING for the next round; ``fail_stale_registrations`` fails what
    is still PENDING after an hour. Meant for the server's housekeeping round; returns how
    many it settled."""
    with store.session() as session:
        stale = model_versions.stale_pending(session, older_than=older_than)
    settled = 0
    for version in stale:
        try:
            with store.session() as session:
                logged = lineage.logged_model(session, version.logged_model_id)
        except NotFoundError:
            continue  # its run is gone: the hour's sweep fails it
        prefix = f"{layout.run_artifacts_prefix(logged.project_id, logged.run_id)}/{logged.path}"
        try:
            status, message = _files_verdict(artifacts, prefix, logged.manifest_sha256)
        except Exception as exc:  # unreadable now, which says nothing of the files
            log.warning(
                "version %s/%s: its package could not be read (%s); next round",
                version.model,
                version.version,
                exc,
            )
            continue
        with store.session() as session:
            model_versions.set_status(
                session,
                version.project,
                version.model,
                version.version,
                status,
                message,
                actor=SWEEPER_ACTOR,
            )
        settled += 1
    return settled


def fail_stale_registrations(
    store: MetadataStore, *, older_than: timedelta = timedelta(hours=1)
) -> int:
    """Fail versions left PENDING by a registration that died (RELIABILITY 18).

    ``older_than`` must exceed the longest verification (hashing the largest package), since
    the first verdict stands: a version failed here stays FAILED. Meant for the server's
    housekeeping round.
    """
    with store.session() as session:
        return model_versions.fail_stale_pending(
            session, older_than=older_than, actor=SWEEPER_ACTOR
        )
