"""What a step function gets (``StepContext``) and the ``@step`` mark a python step needs.

A ``python: module:function`` step must name a function marked with ``@loopml.pipelines.step``:
a spec can then never call an arbitrary library function (``os:system``) with its ``with``.

Example::

    from loopml.pipelines import StepContext, step

    @step
    def clean(ctx: StepContext, table: str, threshold: float = 0.5) -> dict[str, object]:
        ctx.log.info("cleaning %s (attempt %d)", table, ctx.attempt)
        return {"rows": 42}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.core.pipelines import attempt_prefix

if TYPE_CHECKING:
    from loopml.settings import Settings
    from loopml.storage import ArtifactStore
    from loopml.store import MetadataStore

STEP_MARKER = "__loopml_step__"
F = TypeVar("F", bound=Callable[..., Any])


def step(fn: F) -> F:
    """Mark ``fn`` as a pipeline step: ``fn(ctx, **with)`` returning a mapping of outputs
    (or ``None`` when the step declares none)."""
    setattr(fn, STEP_MARKER, True)
    return fn


@dataclass
class StepContext:
    """What a step runs with.

    Attributes:
        project: the project the run belongs to.
        pipeline: the pipeline's name.
        run_id: the pipeline run.
        step: this step's name.
        step_run_id: this step of this run (the same across its attempts).
        attempt: 1 for the first attempt, 2 for the first retry, ...
        settings: the worker's settings (database, artifact root).
        work_dir: an empty local folder for this attempt, removed afterwards.
        log: a logger whose lines land in the step's log.
        api_url: the platform's API as the worker knows it (the server's own address for
            the worker embedded in ``loopml up``; ``client.url`` for a ``loopml worker``).
    """

    project: str
    project_id: str
    pipeline: str
    run_id: str
    step: str
    step_run_id: str
    attempt: int
    settings: Settings
    work_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("loopml.step"))
    api_url: str | None = None
    _store: MetadataStore | None = field(default=None, repr=False)
    _artifacts: ArtifactStore | None = field(default=None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this step in this run: key side effects on it so a
        retry does not repeat what an earlier attempt already did."""
        return self.step_run_id

    @property
    def actor(self) -> str:
        """Who the step's changes are recorded as made by."""
        return f"pipeline:{self.pipeline}"

    @property
    def store(self) -> MetadataStore:
        """The metadata database (opened on first use)."""
        if self._store is None:
            from loopml.wiring import open_metadata_store

            self._store = open_metadata_store(self.settings)
        return self._store

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store (opened on first use)."""
        if self._artifacts is None:
            from loopml.wiring import open_artifact_store

            self._artifacts = open_artifact_store(self.settings)
        return self._artifacts

    def save_file(self, path: str | Path, name: str | None = None) -> str:
        """Upload a local file into this attempt's folder; return its artifact key (a
        ``files`` output is a list of these)."""
        source = Path(path)
        prefix = attempt_prefix(self.project_id, self.run_id, self.step, self.attempt)
        key = f"{prefix}/files/{name or source.name}"
        with source.open("rb") as handle:
            self.artifacts.write(key, iter(lambda: handle.read(1 << 20), b""))
        return key

    def close(self) -> None:
        """Release the database connections."""
        if self._store is not None:
            self._store.dispose()
