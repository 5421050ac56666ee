"""Request bodies of MLflow's REST API, as MLflow's client sends them.

Lax on purpose, where loopml's own API is strict: MLflow's protobuf JSON may carry an int64
as a string (``"1700000000000"``) and newer clients add fields older servers ignore, so
unknown fields are dropped and numbers may come as text. Limits are checked where loopml
checks them (``core.runs``), with its messages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Body):
    """MLflow's ``{"key", "value"}`` pair (params and tags)."""

    key: str
    value: str = ""


class Metric(_Body):
    """One metric point as MLflow sends it; ``value`` may be ``"NaN"``."""

    key: str
    value: float | str
    timestamp: int = 0
    step: int = 0
    model_id: str | None = Field(default=None, max_length=64)
    """MLflow 3: the logged model the point is also for."""


ViewType = Literal["ACTIVE_ONLY", "DELETED_ONLY", "ALL"]


class ExperimentCreate(_Body):
    name: str
    artifact_location: str | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class ExperimentId(_Body):
    experiment_id: str


class ExperimentUpdate(_Body):
    experiment_id: str
    new_name: str | None = None


class ExperimentTag(_Body):
    experiment_id: str
    key: str
    value: str = ""


class ExperimentSearch(_Body):
    max_results: int = Field(default=1000, ge=1, le=50_000)
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = Field(default_factory=list)
    view_type: ViewType = "ACTIVE_ONLY"


class RegistrySearch(_Body):
    """A registered-model or model-version search, from its query parameters."""

    filter: str | None = None
    order_by: list[str] = Field(default_factory=list)
    max_results: int = 100
    page_token: str | None = None


class RunCreate(_Body):
    experiment_id: str | None = None
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class RunId(_Body):
    run_id: str | None = None
    run_uuid: str | None = None

    @property
    def id(self) -> str:
        """The run id (``run_uuid`` is its old name, still sent by some clients)."""
        return self.run_id or self.run_uuid or ""


class RunUpdate(RunId):
    status: Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"] | None = None
    end_time: int | None = None
    run_name: str | None = None


class RunSearch(_Body):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    run_view_type: ViewType = "ACTIVE_ONLY"
    max_results: int = Field(default=1000, ge=1, le=50_000)
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None


class LogMetric(RunId, Metric):
    pass


class LogParam(RunId, KeyValue):
    pass


class SetTag(RunId, KeyValue):
    pass


class DeleteTag(RunId):
    key: str


class LogBatch(RunId):
    metrics: list[Metric] = Field(default_factory=list)
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class Dataset(_Body):
    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema_: str | None = Field(default=None, alias="schema")
    profile: str | None = None


class DatasetInput(_Body):
    tags: list[KeyValue] = Field(default_factory=list)
    dataset: Dataset


class LogInputs(RunId):
    datasets: list[DatasetInput] = Field(default_factory=list)


class LogModel(RunId):
    model_json: str


class ModelBody(_Body):
    name: str
    description: str = ""
    tags: list[KeyValue] = Field(default_factory=list)


class ModelName(_Body):
    name: str


class ModelRename(_Body):
    name: str
    new_name: str


class StageBody(_Body):
    name: str
    version: str
    stage: str
    archive_existing_versions: bool = False


class VersionRef(_Body):
    name: str
    version: str


class VersionBody(_Body):
    name: str
    source: str
    run_id: str | None = None
    description: str = ""
    tags: list[KeyValue] = Field(default_factory=list)


class VersionUpdate(VersionRef):
    description: str = ""


class AliasBody(_Body):
    name: str
    alias: str
    version: str = ""


class ModelTag(_Body):
    name: str
    key: str
    value: str = ""


class VersionTag(ModelTag):
    version: str


class LatestVersions(_Body):
    name: str
    stages: list[str] = Field(default_factory=list)


class LoggedModelCreate(_Body):
    experiment_id: str | None = None
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class LoggedModelFinalize(_Body):
    status: str


class LoggedModelEntries(_Body):
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class LoggedModelSearch(_Body):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    max_results: int = Field(default=100, ge=1, le=50_000)
    page_token: str | None = None


class ModelOutput(_Body):
    model_id: str
    step: int = 0


class LogOutputs(RunId):
    models: list[ModelOutput] = Field(default_factory=list)
