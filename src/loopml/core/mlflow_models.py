"""Models MLflow 3 clients log through ``/logged-models``: the domain type and its limits.

loopml records them (name, params, tags, status, source run) and keeps their files, but does
not serve them: their files are MLflow's format (a pickle), which loopml never loads. A
model loopml packaged itself is a ``core.runs.LoggedModel``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

MlflowModelStatus = Literal["PENDING", "READY", "FAILED"]
MAX_NAME = 500
MAX_ENTRIES = 100
"""Params and tags each, per model."""


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
