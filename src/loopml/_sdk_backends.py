"""Where ``loopml.start_run`` sends what a run logs: a server over HTTP, or the store itself.

Both backends implement ``TrackingBackend``; ``ActiveRun`` never knows which one it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loopml.core.runs import EndStatus, LogBatch, LoggedModel, Run

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings
    from loopml.storage import ArtifactStore
    from loopml.store import MetadataStore

SDK_ACTOR = "sdk"


class TrackingBackend(Protocol):
    """What a run needs from wherever its records go.

    Attributes:
        project: the project runs are created in.
        where: a short description for messages (a URL or the database).
    """

    project: str
    where: str

    def start(
        self, experiment: str, batch: LogBatch, *, heartbeat_timeout_s: int | None, **fields: Any
    ) -> Run:
        """Create a RUNNING run (and its experiment, if missing) with its first batch."""

    def log_batch(self, run_id: str, batch: LogBatch) -> None:
        """Write one batch atomically."""

    def heartbeat(self, run_id: str) -> None:
        """Keep the run alive (``ConflictError`` once it is not RUNNING)."""

    def end(self, run_id: str, status: EndStatus) -> Run:
        """End the run."""

    def upload(self, run_id: str, path: str, source: Path) -> None:
        """Stream the file ``source`` to the run's artifact ``path``."""

    def record_model(self, run_id: str, **fields: Any) -> LoggedModel:
        """Record a model package already uploaded under the run's artifacts."""


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
        return self.client.runs.create(experiment, project=self.project, **body)

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


class EmbeddedBackend:
    """The metadata store and artifact store named by ``Settings``, used in-process.

    The schema is upgraded if needed, and runs whose heartbeat stopped (a process killed
    earlier) are marked LOST when a new run starts, since no server is there to sweep.
    """

    def __init__(self, settings: Settings, project: str) -> None:
        from loopml._backends import open_artifact_store, open_metadata_store

        self.settings = settings
        self.project = project
        self.store: MetadataStore = open_metadata_store(settings)
        self.where = self.store.safe_url
        if self.store.needs_upgrade():
            self.store.upgrade()
        self.artifacts: ArtifactStore = open_artifact_store(settings)

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
