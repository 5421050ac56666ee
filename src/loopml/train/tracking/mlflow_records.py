"""The tracking records MLflow's REST layer (``api/mlflow``) reads and writes beyond the
run services of ``runs``: experiments by id, a run's MLflow view (its experiment id, latest
metric points and output models), and MLflow 3's logged models. ``MlflowRecords`` opens a
transaction per call (most of its methods are the store's functions, through
``store.service.in_session``); the REST layer shapes MLflow's JSON from what they return."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.orm import Session

from loopml.core import layout
from loopml.core.errors import NotFoundError
from loopml.core.mlflow_models import MlflowModel
from loopml.core.run_search import RunPage, RunSearch
from loopml.core.runs import LoggedModel, Run
from loopml.core.types import Page
from loopml.store import (
    experiments,
    logged_models,
    mlflow_models,
    run_logs,
    run_search,
    runs,
)
from loopml.store.runs import MAX_HEARTBEAT_TIMEOUT_S as MAX_HEARTBEAT_TIMEOUT_S
from loopml.store.service import StoreService, in_session

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


class MlflowRecords(StoreService):
    """The tracking records MLflow's REST layer reads and writes, each call in a transaction
    of its own; built once by the platform (``AppContext.mlflow``)."""

    project_id = in_session(experiments.project_id)
    experiment_by_id = in_session(experiments.get_by_id)
    update_experiment = in_session(experiments.update)
    rename_run = in_session(runs.rename)
    set_run_deleted = in_session(runs.set_deleted)
    delete_run_tag = in_session(run_logs.delete_tag)
    require_run = in_session(runs.require)
    create_logged_model = in_session(mlflow_models.create)
    loopml_package = in_session(logged_models.get)
    finalize_logged_model = in_session(mlflow_models.finalize)
    update_logged_model = in_session(mlflow_models.update_entries)
    delete_logged_model = in_session(mlflow_models.delete)

    def experiment_id_by_name(self, project: str, name: str) -> str | None:
        """The id of the experiment ``name``, or ``None`` when there is none."""
        with self.store.session() as session:
            return experiments.ids_by_name(session, project, [name]).get(name)

    def run_view(self, project: str, run: Run) -> MlflowRunView:
        """What MLflow shows of ``run`` beside it."""
        with self.store.session() as session:
            experiment_id = experiments.get(session, project, run.experiment).id
            points = run_logs.latest_points(session, [run.id])[run.id]
            outputs = mlflow_models.of_runs(session, [run.id])[run.id]
        return MlflowRunView(experiment_id, points, outputs)

    def search_runs(self, project: str, spec: RunSearch) -> RunsFound:
        """One page of a run search with what MLflow shows of each run, in one transaction."""
        with self.store.session() as session:
            page = run_search.search(session, project, spec)
            run_ids = [r.id for r in page.items]
            points = run_logs.latest_points(session, run_ids)
            outputs = mlflow_models.of_runs(session, run_ids)
            names = sorted({r.experiment for r in page.items})
            exp_ids = experiments.ids_by_name(session, project, names) if names else {}
        return RunsFound(page, points, outputs, exp_ids)

    def logged_model_or_package(self, project: str, model_id: str) -> MlflowModel | PackageView:
        """An MLflow logged model, or else a package loopml logged for a run, by its id."""
        with self.store.session() as session:
            try:
                return mlflow_models.get(session, project, model_id)
            except NotFoundError:
                package = logged_models.get(session, project, model_id)
                run = run_logs.get(session, project, package.run_id, parts=())
                return PackageView(package, experiments.get(session, project, run.experiment).id)

    def logged_model_root(self, project: str, model_id: str) -> str:
        """Where a logged model's files live; ``NotFoundError`` when there is no such model."""
        with self.store.session() as session:
            mlflow_models.get(session, project, model_id)
            found = experiments.project_id(session, project)
        return layout.mlflow_model_prefix(found, model_id)

    def search_logged_models(
        self,
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
        with self.store.session() as session:
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

    def set_source_runs(self, project: str, model_ids: list[str], run_id: str) -> None:
        """Record that ``run_id`` produced these logged models."""
        with self.store.session() as session:
            for model_id in model_ids:
                mlflow_models.set_source_run(session, project, model_id, run_id)


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
