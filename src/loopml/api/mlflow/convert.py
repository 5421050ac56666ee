"""loopml's domain objects as MLflow's JSON entities (what MLflow's client parses).

Times are milliseconds since the epoch; lists of ``{"key", "value"}`` stand for maps; a NaN
metric is ``"NaN"``, as protobuf's JSON writes it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from loopml.core.mlflow_models import MlflowModel, stage_of
from loopml.core.registry import ModelVersion, RegisteredModel, VersionStatus
from loopml.core.runs import Experiment, LoggedModel, MetricPoint, Run, RunInput

RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
DATASET_KIND = "mlflow_dataset"
_VERSION_STATUS = {
    VersionStatus.PENDING: "PENDING_REGISTRATION",
    # MLflow's client waits on PENDING_REGISTRATION (get_model_version, 300 s by default).
    VersionStatus.PACKAGING: "PENDING_REGISTRATION",
    VersionStatus.READY: "READY",
    VersionStatus.FAILED: "FAILED_REGISTRATION",
}


def millis(moment: datetime | None) -> int | None:
    """``moment`` in milliseconds since the epoch."""
    return None if moment is None else int(moment.timestamp() * 1000)


def pairs(mapping: dict[str, str] | None) -> list[dict[str, str]]:
    """A map as MLflow's list of ``{"key", "value"}``."""
    return [{"key": k, "value": v} for k, v in (mapping or {}).items()]


def run_artifact_uri(run_id: str) -> str:
    """Where MLflow's client puts a run's files: served by ``/api/2.0/mlflow-artifacts``."""
    return f"mlflow-artifacts:/runs/{run_id}"


def experiment(exp: Experiment) -> dict[str, Any]:
    """An experiment as MLflow's ``Experiment``."""
    return {
        "experiment_id": exp.id,
        "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/experiments/{exp.id}",
        "lifecycle_stage": "deleted" if exp.deleted_at else "active",
        "creation_time": millis(exp.created_at),
        "last_update_time": millis(exp.updated_at),
        "tags": pairs(exp.tags),
    }


def metric(point: MetricPoint) -> dict[str, Any]:
    """A metric point as MLflow's ``Metric``."""
    return latest((point.key, point.value, point.step, point.timestamp_ms))


def latest(point: tuple[str, float, int, int]) -> dict[str, Any]:
    """A run's latest point of a metric, ``(key, value, step, timestamp_ms)``, as MLflow's
    ``Metric``."""
    key, value, step, timestamp_ms = point
    shown: float | str = "NaN" if math.isnan(value) else value
    return {"key": key, "value": shown, "timestamp": timestamp_ms, "step": step}


def run_info(run: Run, experiment_id: str) -> dict[str, Any]:
    """A run's ``RunInfo``."""
    user = (run.tags or {}).get(USER_TAG, run.actor)
    return {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": experiment_id,
        "user_id": user,
        # A run loopml marked LOST (its heartbeat stopped) is FAILED to MLflow's client.
        "status": "FAILED" if run.status == "LOST" else run.status,
        "start_time": millis(run.start_time),
        "end_time": millis(run.end_time),
        "artifact_uri": run_artifact_uri(run.id),
        "lifecycle_stage": "deleted" if run.deleted_at else "active",
    }


def dataset_input(item: RunInput) -> dict[str, Any]:
    """A recorded MLflow dataset input as MLflow's ``DatasetInput``."""
    name, _, digest = item.ref.rpartition("@")
    details = dict(item.details)
    context = details.pop("context", None)
    return {
        "tags": [{"key": "mlflow.data.context", "value": context}] if context else [],
        "dataset": {"name": name, "digest": digest, **details},
    }


def run(
    run: Run,
    experiment_id: str,
    points: list[tuple[str, float, int, int]],
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    """A run as MLflow's ``Run``: info, data (latest metrics, params, tags), inputs and
    outputs (the MLflow 3 models it produced)."""
    tags = dict(run.tags or {})
    tags[RUN_NAME_TAG] = run.name  # the run's name is the tag (setting it renames the run)
    inputs = [dataset_input(i) for i in run.inputs or [] if i.kind == DATASET_KIND]
    return {
        "info": run_info(run, experiment_id),
        "data": {
            "metrics": [latest(p) for p in points],
            "params": pairs(run.params),
            "tags": pairs(tags),
        },
        "inputs": {"dataset_inputs": inputs},
        "outputs": {"model_outputs": [{"model_id": m, "step": 0} for m in outputs or []]},
    }


def model_version(version: ModelVersion, source: str) -> dict[str, Any]:
    """A model version as MLflow's ``ModelVersion``; its stage is the stage alias it holds
    (``core.mlflow_models.STAGE_ALIASES``)."""
    return {
        "name": version.model,
        "version": str(version.version),
        "creation_timestamp": millis(version.created_at),
        "last_updated_timestamp": millis(version.updated_at),
        "user_id": version.actor,
        "current_stage": stage_of(version.aliases),
        "description": version.description,
        "source": source,
        "run_id": version.run_id,
        "status": _VERSION_STATUS[version.status],
        "status_message": version.status_message,
        "tags": pairs(version.tags),
        "aliases": list(version.aliases),
    }


def registered_model(model: RegisteredModel) -> dict[str, Any]:
    """A registered model as MLflow's ``RegisteredModel``."""
    return {
        "name": model.name,
        "creation_timestamp": millis(model.created_at),
        "last_updated_timestamp": millis(model.updated_at),
        "description": model.description,
        "tags": pairs(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in model.aliases.items()],
    }


_MODEL_STATUS = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}


def mlflow_model(model: MlflowModel) -> dict[str, Any]:
    """A model an MLflow 3 client logged, as MLflow's ``LoggedModel``."""
    return {
        "info": {
            "model_id": model.id,
            "experiment_id": model.experiment_id,
            "name": model.name,
            "artifact_uri": f"mlflow-artifacts:/models/{model.id}",
            "creation_timestamp_ms": millis(model.created_at),
            "last_updated_timestamp_ms": millis(model.updated_at),
            "status": _MODEL_STATUS[model.status],
            "status_message": model.status_message,
            "model_type": model.model_type,
            "source_run_id": model.source_run_id or "",
            "tags": pairs(model.tags),
        },
        "data": {
            "params": pairs(model.params),
            "metrics": [
                {
                    **latest((p.key, p.value, p.step, p.timestamp_ms)),
                    "run_id": p.run_id or "",
                    "model_id": model.id,
                }
                for p in model.metrics
            ],
        },
    }


def loopml_package(model: LoggedModel, experiment_id: str) -> dict[str, Any]:
    """A package loopml logged for a run, as MLflow's ``LoggedModel`` (READY, named by its
    folder), so MLflow 3's ``register_model("runs:/<run>/<folder>")`` finds it."""
    return {
        "info": {
            "model_id": model.id,
            "experiment_id": experiment_id,
            "name": model.path,
            "artifact_uri": f"{run_artifact_uri(model.run_id)}/{model.path}",
            "creation_timestamp_ms": millis(model.created_at),
            "last_updated_timestamp_ms": millis(model.created_at),
            "status": "LOGGED_MODEL_READY",
            "status_message": "",
            "model_type": f"loopml-{model.flavor}",
            "source_run_id": model.run_id,
            "tags": [{"key": "loopml.format", "value": model.format}],
        },
        "data": {"params": [], "metrics": []},
    }
