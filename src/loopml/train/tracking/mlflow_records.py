"""The tracking records MLflow's REST layer (``api/mlflow``) reads and writes beyond the
run services of ``runs``: experiments by id, a run's MLflow view (its experiment id, latest
metric points and output models), and MLflow 3's logged models. Each function takes the
store and opens its own transaction; the REST layer shapes MLflow's JSON from what they
return."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.orm import Session

from loopml.core import layout
from loopml.core.errors import NotFoundError
from loopml.core.mlflow_models import MlflowModel, MlflowModelStatus
from loopml.core.run_search import RunPage, RunSearch
from loopml.core.runs import Experiment, LoggedModel, Run
from loopml.core.types import Page
from loopml.store import (
    MetadataStore,
    experiments,
    logged_models,
    mlflow_models,
    run_logs,
    run_search,
    runs,
)
from loopml.store.runs import MAX_HEARTBEAT_TIMEOUT_S as MAX_HEARTBEAT_TIMEOUT_S

Points = list[tuple[str, float, int, int]]
"""A run's latest point of each metric: key, value, timestamp (ms), step."""


class MlflowRunView(NamedTuple):
    """What MLflow shows of a run beside the run: its experiment's id, the latest point of
    each metric and the models it output."""

    experiment_id: str
    points: Points
    outputs: list[str]


class RunsFound(NamedTuple):
    """A page of a run search with what MLflow shows of each run, by run id (experiment ids
    by experiment name)."""

    page: RunPage
    points: dict[str, Points]
    outputs: dict[str, list[str]]
    experiment_ids: dict[str, str]


class PackageView(NamedTuple):
    """A package loopml logged for a run, with the run's experiment id."""

    package: LoggedModel
    experiment_id: str


def project_id(store: MetadataStore, project: str) -> str:
    """A project's id; ``NotFoundError`` when there is none."""
    with store.session() as session:
        return experiments.project_id(session, project)


def experiment_by_id(store: MetadataStore, project: str, experiment_id: str) -> Experiment:
    """An experiment of ``project`` by its id; ``NotFoundError`` when absent."""
    with store.session() as session:
        return experiments.get_by_id(session, project, experiment_id)


def experiment_id_by_name(store: MetadataStore, project: str, name: str) -> str | None:
    """The id of the experiment ``name``, or ``None`` when there is none."""
    with store.session() as session:
        return experiments.ids_by_name(session, project, [name]).get(name)


def update_experiment(
    store: MetadataStore,
    project: str,
    experiment_id: str,
    *,
    name: str | None = None,
    deleted: bool | None = None,
    actor: str,
) -> Experiment:
    """Rename an experiment, or soft-delete or restore it (its runs stay as they are)."""
    with store.session() as session:
        return experiments.update(
            session, project, experiment_id, name=name, deleted=deleted, actor=actor
        )


def run_view(store: MetadataStore, project: str, run: Run) -> MlflowRunView:
    """What MLflow shows of ``run`` beside it."""
    with store.session() as session:
        experiment_id = experiments.get(session, project, run.experiment).id
        points = run_logs.latest_points(session, [run.id])[run.id]
        outputs = mlflow_models.of_runs(session, [run.id])[run.id]
    return MlflowRunView(experiment_id, points, outputs)


def search_runs(store: MetadataStore, project: str, spec: RunSearch) -> RunsFound:
    """One page of a run search with what MLflow shows of each run, in one transaction."""
    with store.session() as session:
        page = run_search.search(session, project, spec)
        run_ids = [r.id for r in page.items]
        points = run_logs.latest_points(session, run_ids)
        outputs = mlflow_models.of_runs(session, run_ids)
        names = sorted({r.experiment for r in page.items})
        exp_ids = experiments.ids_by_name(session, project, names) if names else {}
    return RunsFound(page, points, outputs, exp_ids)


def rename_run(store: MetadataStore, project: str, run_id: str, name: str, *, actor: str) -> Run:
    """Rename a run."""
    with store.session() as session:
        return runs.rename(session, project, run_id, name, actor=actor)


def set_run_deleted(
    store: MetadataStore, project: str, run_id: str, deleted: bool, *, actor: str
) -> Run:
    """Soft-delete or restore a run."""
    with store.session() as session:
        return runs.set_deleted(session, project, run_id, deleted, actor=actor)


def delete_run_tag(store: MetadataStore, project: str, run_id: str, key: str) -> None:
    """Remove a run's tag."""
    with store.session() as session:
        run_logs.delete_tag(session, project, run_id, key)


def require_run(store: MetadataStore, project: str, run_id: str) -> None:
    """``NotFoundError`` unless ``run_id`` is a run of ``project``."""
    with store.session() as session:
        runs.require(session, project, run_id)


def create_logged_model(
    store: MetadataStore,
    project: str,
    experiment_id: str,
    *,
    name: str,
    model_type: str,
    source_run_id: str | None,
    params: dict[str, str],
    tags: dict[str, str],
    actor: str,
) -> MlflowModel:
    """Record a PENDING MLflow 3 logged model whose files the client uploads next."""
    with store.session() as session:
        return mlflow_models.create(
            session,
            project,
            experiment_id,
            name=name,
            model_type=model_type,
            source_run_id=source_run_id,
            params=params,
            tags=tags,
            actor=actor,
        )


def logged_model_or_package(
    store: MetadataStore, project: str, model_id: str
) -> MlflowModel | PackageView:
    """An MLflow logged model, or else a package loopml logged for a run, by its id."""
    with store.session() as session:
        try:
            return mlflow_models.get(session, project, model_id)
        except NotFoundError:
            package = logged_models.get(session, project, model_id)
            run = run_logs.get(session, project, package.run_id, parts=())
            return PackageView(package, experiments.get(session, project, run.experiment).id)


def loopml_package(store: MetadataStore, project: str, model_id: str) -> LoggedModel:
    """A package loopml logged for a run, by its id; ``NotFoundError`` when absent."""
    with store.session() as session:
        return logged_models.get(session, project, model_id)


def finalize_logged_model(
    store: MetadataStore, project: str, model_id: str, status: MlflowModelStatus
) -> MlflowModel:
    """Settle a logged model as READY or FAILED."""
    with store.session() as session:
        return mlflow_models.finalize(session, project, model_id, status)


def update_logged_model(
    store: MetadataStore,
    project: str,
    model_id: str,
    *,
    params: dict[str, str],
    tags: dict[str, str],
    remove_tag: str | None,
) -> MlflowModel:
    """Add params, set tags, or remove a tag of a logged model."""
    with store.session() as session:
        return mlflow_models.update_entries(
            session, project, model_id, params=params, tags=tags, remove_tag=remove_tag
        )


def delete_logged_model(store: MetadataStore, project: str, model_id: str, *, actor: str) -> str:
    """Delete a logged model's record; its project's id, to free its files with."""
    with store.session() as session:
        return mlflow_models.delete(session, project, model_id, actor=actor)


def logged_model_root(store: MetadataStore, project: str, model_id: str) -> str:
    """Where a logged model's files live; ``NotFoundError`` when there is no such model."""
    with store.session() as session:
        mlflow_models.get(session, project, model_id)
        found = experiments.project_id(session, project)
    return layout.mlflow_model_prefix(found, model_id)


def search_logged_models(
    store: MetadataStore,
    project: str,
    *,
    experiment_ids: list[str],
    name: str | None,
    source_run_id: str | None,
    limit: int,
    cursor: str | None,
    with_packages: bool,
) -> tuple[Page[MlflowModel], list[PackageView]]:
    """A page of MLflow logged models, newest first, and (``with_packages``: on the first
    page, when a name or a source run is asked for) the packages loopml logged for runs of
    these experiments, filtered alike."""
    with store.session() as session:
        page = mlflow_models.search(
            session,
            project,
            experiment_ids=experiment_ids,
            name=name,
            source_run_id=source_run_id,
            limit=limit,
            cursor=cursor,
        )
        packages: list[PackageView] = []
        if with_packages:
            packages = _packages(session, project, experiment_ids, name, source_run_id)
    return page, packages


def _packages(
    session: Session, project: str, ids: list[str], name: str | None, run_id: str | None
) -> list[PackageView]:
    if run_id is None:
        if name is None:
            return []  # listing every run's packages is loopml's own API's job
        found = logged_models.list_by_path(session, project, ids, name)
        exp_ids = experiments.ids_by_name(session, project, sorted({e for e, _ in found}))
        return [PackageView(p, exp_ids[e]) for e, p in found]
    runs.require(session, project, run_id)
    run = run_logs.get(session, project, run_id, parts=())
    experiment_id = experiments.get(session, project, run.experiment).id
    if ids and experiment_id not in ids:
        return []
    return [
        PackageView(p, experiment_id)
        for p in logged_models.list_for_run(session, project, run_id)
        if name in (None, p.path)
    ]


def set_source_runs(store: MetadataStore, project: str, model_ids: list[str], run_id: str) -> None:
    """Record that ``run_id`` produced these logged models."""
    with store.session() as session:
        for model_id in model_ids:
            mlflow_models.set_source_run(session, project, model_id, run_id)
