"""Versions left PACKAGING by a server that stopped mid-conversion: their conversion is
queued again, since its verdict depends only on the run's files.

A server marks the package records it is making as seen on every housekeeping round
(``heartbeat``). ``requeue_orphans`` takes over a record whose server is gone: at start, one
this host's stopped process left (its ``host:pid`` no longer runs); on every round, one
whose server has not been seen for ``mlflow.convert_stale_s`` (a server on another host
sharing the database, which this host cannot ask). Taking over is a compare-and-set on the
record's maker, so of two servers one wins; the loser's converter, if it still runs,
notices before writing the package and settles nothing.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.core.errors import LoopmlError
from loopml.core.keys import join_key, validate_key
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.registry.mlflow_packaging import (
    MlflowPackager,
    PackagingJob,
    mlflow_model_source,
    packager_id,
    settle,
)
from loopml.registry.versions import SWEEPER_ACTOR, _verdict
from loopml.store import MetadataStore, lineage, logged_models, model_versions
from loopml.store.logged_models import PackagingClaim
from loopml.system.processes import alive

log = logging.getLogger("loopml.registry")

_LOGGED_MODEL_SOURCE = re.compile(r"models:/([0-9a-f]{32})")


def heartbeat(store: MetadataStore) -> int:
    """Mark seen now the packages this server is making; returns how many."""
    with store.session() as session:
        return logged_models.touch_packaging(session, packager_id(), utcnow())


def orphaned(
    claim: PackagingClaim,
    *,
    since: datetime,
    now: datetime,
    stale_after: timedelta,
    at_start: bool,
    alive: Callable[[int], bool],
) -> bool:
    """Whether no server is making this package any more: this host's maker is not running
    (at start, a maker with this process's own pid was an earlier process), or the maker
    was last seen (``since`` for records without a heartbeat) over ``stale_after`` ago."""
    me = packager_id()
    if claim.packager == me and not at_start:
        return False
    host, _, pid = claim.packager.rpartition(":")
    gone_here = host == socket.gethostname() and (
        claim.packager == me or not pid.isdigit() or not alive(int(pid))
    )
    return gone_here or now - (claim.seen or since) > stale_after


def requeue_orphans(
    packager: MlflowPackager, *, stale_after: timedelta, at_start: bool = False
) -> int:
    """Take over the PACKAGING versions whose server is gone (``orphaned``) and queue their
    conversion on ``packager``; a package already made is only verified again. Returns how
    many were taken over."""
    store = packager.store
    with store.session() as session:
        versions = model_versions.packaging(session)
    taken = 0
    for version in versions:
        with store.session() as session:
            claim = logged_models.packaging_claim(session, version.logged_model_id)
        if claim is None or not orphaned(
            claim,
            since=version.updated_at,
            now=utcnow(),
            stale_after=stale_after,
            at_start=at_start,
            alive=alive,
        ):
            continue
        with store.session() as session:
            mine = logged_models.claim_packaging(
                session,
                version.logged_model_id,
                expected=claim.packager,
                packager=packager_id(),
                now=utcnow(),
            )
        if mine:
            _resume(packager, version, claim)
            taken += 1
    return taken


def _resume(packager: MlflowPackager, version: ModelVersion, claim: PackagingClaim) -> None:
    log.info(
        "version %s/%s was left PACKAGING by %s: converting it again",
        version.model,
        version.version,
        claim.packager,
    )
    try:
        job = _job(packager.store, version, claim.mlflow_source)
    except LoopmlError as exc:
        failed = PackagingJob(
            version.project, version.model, version.version, "", "", "", "", SWEEPER_ACTOR
        )
        reason = f"the packaging was interrupted and cannot resume: {exc.message}"
        settle(packager.store, failed, VersionStatus.FAILED, reason)
        return
    if claim.completed:  # the package exists; its verification was interrupted
        with packager.store.session() as session:
            info = lineage.logged_model(session, version.logged_model_id)
        prefix = join_key(layout.run_artifacts_prefix(info.project_id, info.run_id), info.path)
        status, message = _verdict(packager.artifacts, prefix, info.manifest_sha256)
        settle(packager.store, job, status, message)
        return
    packager.submit(job)


def _job(store: MetadataStore, version: ModelVersion, source: str) -> PackagingJob:
    """The converter's job for ``version``, rebuilt from its package record."""
    with store.session() as session:
        info = lineage.logged_model(session, version.logged_model_id)
    model = _LOGGED_MODEL_SOURCE.fullmatch(source)
    if model is not None:
        _, prefix = mlflow_model_source(store, version.project, model.group(1))
    else:
        run_prefix = layout.run_artifacts_prefix(info.project_id, info.run_id)
        prefix = join_key(run_prefix, validate_key(source))
    return PackagingJob(
        version.project,
        version.model,
        version.version,
        info.run_id,
        prefix,
        version.logged_model_id,
        info.path,
        SWEEPER_ACTOR,
    )
