"""Tracking services over the metadata store: experiments, runs, batches, search, sweeping.

Each function is one transaction (or a few, where said) and takes its backends as arguments.
"""

from __future__ import annotations

import logging
from typing import Any

from loopml.core import layout
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.core.mlflow_filter import FilterClause, FilterOrder
from loopml.core.mlflow_models import ModelMetric
from loopml.core.run_search import RunPage, RunSearch
from loopml.core.runs import EndStatus, Experiment, LogBatch, MetricPoint, Run
from loopml.core.types import Page
from loopml.storage import ArtifactStore
from loopml.store import (
    MetadataStore,
    experiments,
    mlflow_models,
    run_cleanup,
    run_logs,
    run_search,
    runs,
)

log = logging.getLogger("loopml.train.tracking")

SYSTEM_ACTOR = "system"


def create_experiment(
    store: MetadataStore, project: str, name: str, *, description: str = "", actor: str
) -> Experiment:
    """Create an experiment (``AlreadyExistsError`` if the name is taken)."""
    with store.session() as session:
        return experiments.create(session, project, name, description=description, actor=actor)


def get_experiment(store: MetadataStore, project: str, name: str) -> Experiment:
    """One experiment by name (``NotFoundError`` if absent)."""
    with store.session() as session:
        return experiments.get(session, project, name)


def ensure_experiment(store: MetadataStore, project: str, name: str, *, actor: str) -> Experiment:
    """The experiment ``name``, created if missing; safe when two callers race to create it."""
    try:
        return get_experiment(store, project, name)
    except NotFoundError:
        pass
    try:
        return create_experiment(store, project, name, actor=actor)
    except AlreadyExistsError:
        return get_experiment(store, project, name)


def list_experiments(
    store: MetadataStore, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Experiment]:
    """One page of a project's experiments, by name."""
    with store.session() as session:
        return experiments.list_(session, project, limit=limit, cursor=cursor)


def search_experiments(
    store: MetadataStore,
    project: str,
    clauses: list[FilterClause],
    *,
    lifecycle: str = "active",
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[Experiment]:
    """One page of the experiments matching every clause (``core.mlflow_filter``)."""
    with store.session() as session:
        return experiments.search(
            session,
            project,
            lifecycle=lifecycle,
            clauses=clauses,
            order_by=order_by,
            limit=limit,
            page_token=page_token,
        )


def set_experiment_tag(
    store: MetadataStore,
    project: str,
    experiment_id: str,
    key: str,
    value: str | None,
    *,
    actor: str,
) -> Experiment:
    """Set an experiment's tag, or remove it (``value`` ``None``)."""
    with store.session() as session:
        return experiments.set_tag(session, project, experiment_id, key, value, actor=actor)


def start_run(
    store: MetadataStore,
    project: str,
    experiment: str,
    *,
    heartbeat_timeout_s: int,
    actor: str,
    name: str | None = None,
    code_version: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    batch: LogBatch | None = None,
    create_experiment: bool = False,
) -> Run:
    """Start a RUNNING run, logging ``batch`` (its first params, tags, inputs) with it.

    Args:
        store: the metadata store.
        project: the project's name.
        experiment: the experiment's name.
        heartbeat_timeout_s: how long the run may go without a heartbeat before it is LOST.
        actor: who starts it.
        name: a display name; ``run-<id prefix>`` when omitted.
        code_version: where the code came from (git commit and dirty flag, or a hash).
        parent_run_id: the run this one is nested in.
        batch: logged in the same transaction as the run's creation.
        create_experiment: create the experiment first if it does not exist.

    Raises:
        NotFoundError: no such project, experiment (unless created) or parent run.
        ValidationError: a bad argument.
    """
    if create_experiment:
        ensure_experiment(store, project, experiment, actor=actor)
    with store.session() as session:
        run = runs.create(
            session,
            project,
            experiment,
            name=name,
            heartbeat_timeout_s=heartbeat_timeout_s,
            code_version=code_version,
            parent_run_id=parent_run_id,
            actor=actor,
        )
        if batch is not None:
            run_logs.log_batch(session, project, run.id, batch)
            return run_logs.get(session, project, run.id)
    return run


def get_run(store: MetadataStore, project: str, run_id: str) -> Run:
    """A run with its params, latest metrics, tags and inputs."""
    with store.session() as session:
        return run_logs.get(session, project, run_id)


def log_batch(
    store: MetadataStore,
    project: str,
    run_id: str,
    batch: LogBatch,
    *,
    model_metrics: dict[str, list[ModelMetric]] | None = None,
) -> None:
    """Write a batch (at most 100 params, 1000 metric points, 100 tags) atomically, with the
    points an MLflow 3 client also logged for models (``model_metrics``, by model id)."""
    with store.session() as session:
        run_logs.log_batch(session, project, run_id, batch)
        for model_id, points in (model_metrics or {}).items():
            mlflow_models.log_metrics(session, project, model_id, points)


def metric_history(
    store: MetadataStore,
    project: str,
    run_id: str,
    key: str,
    *,
    limit: int = 1000,
    cursor: str | None = None,
) -> Page[MetricPoint]:
    """One page of a metric's points, in step order."""
    with store.session() as session:
        return run_logs.metric_history(session, project, run_id, key, limit=limit, cursor=cursor)


def heartbeat(store: MetadataStore, project: str, run_id: str) -> None:
    """Keep a RUNNING run alive (``ConflictError`` once it ended or was marked LOST)."""
    with store.session() as session:
        runs.heartbeat(session, project, run_id)


def end_run(
    store: MetadataStore, project: str, run_id: str, status: EndStatus, *, actor: str
) -> Run:
    """End a run as FINISHED, FAILED or KILLED."""
    with store.session() as session:
        runs.set_status(session, project, run_id, status, actor=actor)
        return run_logs.get(session, project, run_id)


def resume_run(store: MetadataStore, project: str, run_id: str, *, actor: str) -> Run:
    """Set an ended run RUNNING again (MLflow's resumed run); emits ``run.resumed``."""
    with store.session() as session:
        runs.resume(session, project, run_id, actor=actor)
        return run_logs.get(session, project, run_id)


def search_runs(store: MetadataStore, project: str, spec: RunSearch) -> RunPage:
    """One page of runs matching ``spec``, with the cursors of the pages around it."""
    with store.session() as session:
        return run_search.search(session, project, spec)


def delete_run(
    store: MetadataStore, artifacts: ArtifactStore, project: str, run_id: str, *, actor: str
) -> int:
    """Delete a run and its child runs, then free their files; returns the files removed.

    The rows go first, in one transaction: files left behind by a failed cleanup sit under
    ids no run has any more and are logged as garbage, never served.

    Raises:
        NotFoundError: no such run in the project.
        ConflictError: a model version was registered from the run or a child run.
    """
    with store.session() as session:
        project_id = experiments.project_id(session, project)
        deleted = run_cleanup.delete_run(session, project, run_id, actor=actor)
    removed = 0
    for rid in deleted:
        try:
            removed += artifacts.delete_prefix(f"{layout.runs_prefix(project_id)}/{rid}")
        except Exception:
            log.exception("run %s deleted, but freeing its artifacts failed", rid)
    return removed


def sweep_lost_runs(store: MetadataStore) -> int:
    """Mark LOST every RUNNING run whose heartbeat timed out; returns how many."""
    with store.session() as session:
        lost = run_cleanup.sweep_lost(session, actor=SYSTEM_ACTOR)
    if lost:
        log.info("marked %d runs LOST (heartbeat timed out): %s", len(lost), ", ".join(lost[:20]))
    return len(lost)
