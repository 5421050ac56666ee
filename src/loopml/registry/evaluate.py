"""Scoring registered versions on frozen eval sets, for the gate.

``evaluate_version`` loads a READY version's package (verified), reads a dataset version's
eval part and stores the report. With no dataset given it uses the one the version's run
trained on (its ``dataset`` input); the target and task come from the run's params.
``champion_scorer`` is what ``gate.judge_version`` calls to score the champion on the
challenger's eval set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.core.errors import ConflictError
from loopml.core.gate import EvaluationReport, GateResult, StoredEvaluation
from loopml.core.registry import ModelVersion
from loopml.packaging import load_model
from loopml.registry import gate
from loopml.registry.packages import fetch_package
from loopml.registry.versions import resolve
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.train import tracking

if TYPE_CHECKING:
    import pandas as pd

LATENCY_CALLS = 200


def _training_facts(
    store: MetadataStore, project: str, version: ModelVersion
) -> tuple[str | None, str | None, str | None]:
    from loopml.train.datasets_io import DATASET_INPUT_KIND

    run = tracking.get_run(store, project, version.run_id)
    params = run.params or {}
    datasets = [i.ref for i in run.inputs or [] if i.kind == DATASET_INPUT_KIND]
    return (datasets[-1] if datasets else None), params.get("target"), params.get("task")


def evaluate_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    model: str,
    version: int,
    *,
    actor: str,
    dataset: str | None = None,
    target: str | None = None,
    primary_metric: str | None = None,
    latency_calls: int = LATENCY_CALLS,
) -> StoredEvaluation:
    """Score a version on a dataset version's frozen eval set and store the report.

    Raises:
        ConflictError: the version is not READY, no dataset or target is known, or the
            dataset has no split.
        NotFoundError: no such model, version or dataset.
        ArtifactIntegrityError: the package or the eval rows do not match their hashes.
    """
    # Scoring reads the eval rows with pandas: imported here, not when the API starts.
    from loopml.train.datasets_io import eval_set
    from loopml.train.evaluation import evaluate

    found = resolve(store, project, f"{model}/{version}")
    trained_on, trained_target, task = _training_facts(store, project, found)
    dataset = dataset or trained_on
    target = target or trained_target
    if dataset is None or target is None:
        raise ConflictError(
            f"version {version} of model {model!r} was not trained by loopml on a dataset: "
            "name the dataset and the target to evaluate it on",
            details={"model": model, "version": version},
        )
    rows = eval_set(store, artifacts, project, dataset)
    with tempfile.TemporaryDirectory(prefix="loopml-eval-") as tmp:
        fetched, folder = fetch_package(store, artifacts, project, found.ref, Path(tmp) / "pkg")
        loaded = load_model(folder, manifest_sha256=fetched.manifest_sha256)
        report = evaluate(
            loaded,
            rows.frame,
            target,
            "regression" if task == "regression" else "classification",
            eval_hash=rows.eval_hash,
            primary_metric=primary_metric,
            dataset=rows.dataset,
        )
        if latency_calls > 0:
            report = _served(report, folder, fetched, rows.frame, target, latency_calls)
    return gate.save_evaluation(store, project, model, version, report, actor=actor)


def _served(
    report: EvaluationReport,
    folder: Path,
    version: ModelVersion,
    frame: pd.DataFrame,
    target: str,
    calls: int,
) -> EvaluationReport:
    """``report`` with the package's one-row latency as the model server runs it
    (``served_latency``: the first eval row as a client's JSON, its checks and casts and one
    ONNX Runtime thread): the figure ``loopml train --max-predict-ms`` limits and the server
    answers in, so the gate's latency rules judge what callers will wait for."""
    from loopml.train.evaluation import served_latency

    row = frame.drop(columns=[target]).iloc[:1]
    latency = served_latency(folder, version.manifest_sha256, row, calls=calls)
    details = {**report.details, "latency_calls": calls, "latency_measured": "served"}
    return report.model_copy(update={"latency": latency, "details": details})


def champion_scorer(
    store: MetadataStore, artifacts: ArtifactStore, project: str, *, actor: str
) -> gate.ChampionScorer:
    """Scores the champion on the challenger's eval set (``gate.judge_version``'s hook)."""

    def score(champion: ModelVersion, challenger: EvaluationReport) -> EvaluationReport:
        if challenger.dataset is None:
            raise ConflictError(
                "the challenger's evaluation names no dataset: the champion cannot be scored "
                "on the same eval set",
                details={"eval_hash": challenger.eval_hash},
            )
        _, target, _ = _training_facts(store, project, champion)
        stored = evaluate_version(
            store,
            artifacts,
            project,
            champion.model,
            champion.version,
            actor=actor,
            dataset=challenger.dataset,
            target=target,
            primary_metric=challenger.primary_metric,
        )
        if stored.report.eval_hash != challenger.eval_hash:
            raise ConflictError(
                f"dataset {challenger.dataset} no longer has the eval set "
                f"{challenger.eval_hash[:12]} the challenger was scored on",
                details={"dataset": challenger.dataset},
            )
        return stored.report

    return score


def judge(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    model: str,
    version: int,
    *,
    eval_hash: str | None,
    actor: str,
) -> GateResult:
    """Judge a version by its model's policy and record the verdict; the champion is scored
    on the challenger's eval set first when it never was."""
    return gate.judge_version(
        store,
        project,
        model,
        version,
        actor=actor,
        eval_hash=eval_hash,
        score_champion=champion_scorer(store, artifacts, project, actor=actor),
    )
