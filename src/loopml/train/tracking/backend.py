"""``TrackingBackend``: where a run's records go, as ``ActiveRun`` sees it. Two implement it:
``loopml.sdk.backends.HttpBackend`` (a server) and
``loopml.registry.embedded_training.EmbeddedBackend`` (the stores, in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from loopml.core.runs import EndStatus, LogBatch, LoggedModel, Run


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
