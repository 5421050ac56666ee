"""The SDK's HTTP side: a run's records (``HttpBackend``, a ``TrackingBackend``) and
training's datasets, registry and checkpoints (``HttpAccess``, a ``TrainingAccess``) on a
loopml server. Their embedded twins write straight into the stores:
``loopml.registry.embedded_training``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.datasets import DatasetRef
from loopml.core.errors import ValidationError
from loopml.core.gate import EvaluationReport
from loopml.core.registry import ModelVersion
from loopml.core.runs import EndStatus, LogBatch, LoggedModel, Run
from loopml.registry.embedded_training import EmbeddedBackend
from loopml.train.service import Frames

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.train.custom import CheckpointStore

__all__ = ["EmbeddedBackend", "HttpAccess", "HttpBackend"]


class HttpBackend:
    """A loopml server, through ``loopml.client.Client``."""

    def __init__(self, client: Client, project: str) -> None:
        self.client = client
        self.project = project
        self.where = client.url

    def start(
        self, experiment: str, batch: LogBatch, *, heartbeat_timeout_s: int | None, **fields: Any
    ) -> Run:
        body = {k: v for k, v in fields.items() if v is not None}
        if heartbeat_timeout_s is not None:
            body["heartbeat_timeout_s"] = heartbeat_timeout_s
        body.update(batch.model_dump(mode="json", exclude={"metrics"}, exclude_defaults=True))
        run = self.client.runs.create(experiment, project=self.project, **body)
        # Creating a run takes no metric points: the first batch's follow (an AutoML trial's
        # score and timings), as the embedded backend writes them with the run.
        if batch.metrics:
            self.log_batch(run.id, LogBatch(metrics=batch.metrics))
        return run

    def log_batch(self, run_id: str, batch: LogBatch) -> None:
        self.client.runs.log_batch(run_id, batch, project=self.project)

    def heartbeat(self, run_id: str) -> None:
        self.client.runs.heartbeat(run_id, project=self.project)

    def end(self, run_id: str, status: EndStatus) -> Run:
        return self.client.runs.end(run_id, status, project=self.project)

    def upload(self, run_id: str, path: str, source: Path) -> None:
        self.client.runs.upload_artifact(run_id, path, source, project=self.project)

    def record_model(self, run_id: str, **fields: Any) -> LoggedModel:
        return self.client.runs.record_model(run_id, project=self.project, **fields)


class HttpAccess:
    """Training's datasets, registry and checkpoints on a loopml server (``TrainingAccess``)."""

    def __init__(self, backend: HttpBackend) -> None:
        self.backend = backend
        self.project = backend.project
        self._client = backend.client

    def frames(self, ref: str) -> Frames:
        parsed = DatasetRef.parse(ref)
        version = self._client.datasets.version(self.project, parsed.name, parsed.version)
        label = f"{version.dataset}@{version.version}"
        if version.split is None:
            raise ValidationError(
                f"dataset {label} has no train/eval split: freeze one first, for example "
                f"`loopml datasets split {label} --eval 0.2 --stratify <target>`"
            )
        read = self._client.datasets.read
        train = read(self.project, version.dataset, version.version, "train").to_pandas()
        frame = read(self.project, version.dataset, version.version, "eval").to_pandas()
        return Frames(label, train, frame, version.split.eval_hash)

    def register(self, model: str, run_id: str, description: str) -> ModelVersion:
        return self._client.models.register_version(
            model, run_id=run_id, description=description, project=self.project
        )

    def evaluate(self, model: str, version: int, dataset: str) -> EvaluationReport:
        stored = self._client.models.evaluate(model, version, dataset=dataset, project=self.project)
        return stored.report

    def checkpoints(self) -> CheckpointStore:
        return _HttpCheckpoints(self._client, self.project)


class _HttpCheckpoints:
    """Checkpoints as project artifacts on a server."""

    def __init__(self, client: Client, project: str) -> None:
        self._client = client
        self._project = project

    def put(self, key: str, source: Path) -> None:
        self._client.artifacts.upload(self._project, source, key)

    def get(self, key: str, dest: Path) -> None:
        self._client.artifacts.download(self._project, key, dest)

    def keys(self, prefix: str) -> list[str]:
        return [a.key for a in self._client.artifacts.iter(self._project, prefix=prefix)]

    def delete(self, key: str) -> None:
        self._client.artifacts.delete(self._project, key)
