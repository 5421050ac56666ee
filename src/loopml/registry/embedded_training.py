"""The embedded backend of training: runs, models, datasets and checkpoints written straight
into a metadata store and an artifact store (no server). The SDK uses it when no URL is given,
on the stores it opens from its settings; a pipeline step always does, on its context's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.core.datasets import DatasetRef
from loopml.core.gate import EvaluationReport
from loopml.core.registry import ModelVersion
from loopml.core.runs import EndStatus, LogBatch, LoggedModel, Run
from loopml.train.service import Frames

if TYPE_CHECKING:
    from loopml.settings import Settings
    from loopml.storage import ArtifactStore
    from loopml.store import MetadataStore
    from loopml.train.custom import CheckpointStore

SDK_ACTOR = "sdk"


class EmbeddedBackend:
    """A metadata store and artifact store used in-process, opened by the caller (the SDK's
    ``sdk.tracking``, a pipeline step's context): this module opens no backend itself.

    Runs whose heartbeat stopped (a process killed earlier) are marked LOST when a new run
    starts, since no server is there to sweep.
    """

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, settings: Settings, project: str
    ) -> None:
        self.settings = settings
        self.project = project
        self.store = store
        self.where = store.safe_url
        self.artifacts = artifacts

    def start(
        self, experiment: str, batch: LogBatch, *, heartbeat_timeout_s: int | None, **fields: Any
    ) -> Run:
        from loopml.train import tracking

        tracking.sweep_lost_runs(self.store)
        timeout = heartbeat_timeout_s or self.settings.tracking.heartbeat_timeout_s
        return tracking.start_run(
            self.store,
            self.project,
            experiment,
            heartbeat_timeout_s=timeout,
            actor=SDK_ACTOR,
            batch=batch,
            create_experiment=True,
            **fields,
        )

    def log_batch(self, run_id: str, batch: LogBatch) -> None:
        from loopml.train import tracking

        tracking.log_batch(self.store, self.project, run_id, batch)

    def heartbeat(self, run_id: str) -> None:
        from loopml.train import tracking

        tracking.heartbeat(self.store, self.project, run_id)

    def end(self, run_id: str, status: EndStatus) -> Run:
        from loopml.train import tracking

        return tracking.end_run(self.store, self.project, run_id, status, actor=SDK_ACTOR)

    def upload(self, run_id: str, path: str, source: Path) -> None:
        from loopml.train.tracking import artifacts

        with source.open("rb") as handle:
            chunks = iter(lambda: handle.read(1024 * 1024), b"")
            artifacts.write(self.store, self.artifacts, self.project, run_id, path, chunks)

    def record_model(self, run_id: str, **fields: Any) -> LoggedModel:
        from loopml.train.tracking import artifacts

        return artifacts.record_model(self.store, self.artifacts, self.project, run_id, **fields)


class EmbeddedAccess:
    """Training's datasets, registry and checkpoints in the embedded stores (``TrainingAccess``)."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        self.project = backend.project

    def frames(self, ref: str) -> Frames:
        from loopml.train.datasets_io import training_set

        found = training_set(
            self.backend.store, self.backend.artifacts, self.project, DatasetRef.parse(ref)
        )
        return Frames(found.eval.dataset, found.train, found.eval.frame, found.eval.eval_hash)

    def register(self, model: str, run_id: str, description: str) -> ModelVersion:
        from loopml.registry import register_version

        return register_version(
            self.backend.store,
            self.backend.artifacts,
            project=self.project,
            model_name=model,
            run_id=run_id,
            description=description,
            actor=SDK_ACTOR,
        )

    def evaluate(self, model: str, version: int, dataset: str) -> EvaluationReport:
        from loopml.registry.evaluate import evaluate_version

        store, artifacts = self.backend.store, self.backend.artifacts
        return evaluate_version(
            store, artifacts, self.project, model, version, actor=SDK_ACTOR, dataset=dataset
        ).report

    def checkpoints(self) -> CheckpointStore:
        return _EmbeddedCheckpoints(self.backend)


class _EmbeddedCheckpoints:
    """Checkpoints as project artifacts in the embedded artifact store."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        from loopml.core import layout
        from loopml.store import projects

        with backend.store.session() as session:
            project_id = projects.get(session, backend.project).id
        self._root = layout.project_artifacts_prefix(project_id)
        self._artifacts = backend.artifacts

    def put(self, key: str, source: Path) -> None:
        with source.open("rb") as handle:
            self._artifacts.write(f"{self._root}/{key}", iter(lambda: handle.read(1 << 20), b""))

    def get(self, key: str, dest: Path) -> None:
        dest.write_bytes(self._artifacts.read_bytes(f"{self._root}/{key}"))

    def keys(self, prefix: str) -> list[str]:
        start = len(self._root) + 1
        return [o.key[start:] for o in self._artifacts.list(f"{self._root}/{prefix}")]

    def delete(self, key: str) -> None:
        self._artifacts.delete(f"{self._root}/{key}")
