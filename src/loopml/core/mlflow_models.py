"""Models MLflow 3 clients log through ``/logged-models``: the domain type and its limits;
and where a project's MLflow API is (``tracking_uri``).

loopml records them (name, params, tags, status, source run) and keeps their files, but does
not serve them: their files are MLflow's format (a pickle), which loopml never loads. A
model loopml packaged itself is a ``core.runs.LoggedModel``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError
from loopml.core.gate import PROTECTED_ALIAS

MlflowModelStatus = Literal["PENDING", "READY", "FAILED"]
MAX_NAME = 500
MAX_ENTRIES = 100
"""Params and tags each, per model."""
PROJECT_ROOT = "/mlflow/projects/{project}"
"""The path of a project's own MLflow tracking URI on the server (MLflow's client appends
``/api/2.0/mlflow/...``, ``/ajax-api/...`` and ``/api/2.0/mlflow-artifacts/...`` to it)."""


def tracking_uri(server_url: str, project: str) -> str:
    """``MLFLOW_TRACKING_URI`` for MLflow clients working in ``project`` on the loopml server
    at ``server_url``."""
    return server_url.rstrip("/") + PROJECT_ROOT.format(project=project)


MAX_METRICS = 1000
"""Metric points logged with one model's id (``log_metric(..., model_id=...)``)."""


class ModelMetric(BaseModel):
    """A metric point an MLflow 3 client logged for a model (``value`` NaN allowed)."""

    model_config = ConfigDict(frozen=True)

    key: str
    value: float
    step: int
    timestamp_ms: int
    run_id: str | None = None


class MlflowModel(BaseModel):
    """A model an MLflow 3 client logged."""

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    experiment_id: str
    name: str
    model_type: str
    source_run_id: str | None
    status: MlflowModelStatus
    status_message: str
    params: dict[str, str]
    tags: dict[str, str]
    actor: str
    created_at: datetime
    updated_at: datetime
    metrics: list[ModelMetric] = Field(default_factory=list)


STAGES = ("None", "Staging", "Production", "Archived")
"""MLflow 2's model version stages."""
STAGE_ALIASES: dict[str, str] = {
    "Production": PROTECTED_ALIAS,
    "Staging": "staging",
    "Archived": "archived",
}
"""The alias each stage is: a version is in a stage while that alias points at it, so a
stage holds one version at a time, and Production is ``champion``, behind the gate."""


def parse_stage(text: str) -> str:
    """MLflow's stage name for ``text`` (any case, as MLflow's server accepts it).

    Raises:
        ValidationError: not one of ``STAGES``.
    """
    for stage in STAGES:
        if text.strip().lower() == stage.lower():
            return stage
    raise ValidationError(
        f"invalid stage {text[:40]!r}: expected one of {', '.join(STAGES)}",
        details={"field": "stage"},
    )


def stage_of(aliases: Iterable[str]) -> str:
    """The stage a version holding ``aliases`` is in (``None`` without a stage alias)."""
    held = set(aliases)
    return next((s for s, a in STAGE_ALIASES.items() if a in held), "None")
