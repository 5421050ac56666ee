"""Pipelines, their versions, runs, step runs (the work queue), attempts, the step cache and
the workers' reports of what their nodes offer.

``pipeline_step_runs`` is the queue: workers claim a QUEUED row whose ``next_attempt_at``
has come, set a lease and bump ``fencing_token``; every later write by that worker names the
token, so a worker whose lease was taken over cannot change anything (RELIABILITY 19).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type


class PipelineRow(EntityMixin, Base):
    """A named pipeline of a project; ``latest_version`` is its newest version's number."""

    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))


class PipelineVersionRow(EntityMixin, Base):
    """One applied version: the YAML as given and its normalized, checked definition."""

    __tablename__ = "pipeline_versions"
    __table_args__ = (UniqueConstraint("pipeline_id", "version"),)

    pipeline_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipelines.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))


class PipelineRunRow(EntityMixin, Base):
    """One run of a pipeline version."""

    __tablename__ = "pipeline_runs"

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    pipeline_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_versions.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StepRunRow(EntityMixin, Base):
    """One step of a run: its place in the queue, its lease, and its results."""

    __tablename__ = "pipeline_step_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "status", "lease_expires_at"),
    )

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_runs.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer)
    uses: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(12))
    needs: Mapped[list[str]] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    retry: Mapped[dict[str, Any]] = mapped_column(JSON)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cache: Mapped[bool] = mapped_column(Boolean, default=False)
    cpus: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cached_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class StepAttemptRow(EntityMixin, Base):
    """One attempt at a step: the worker that held the lease, and how it ended."""

    __tablename__ = "pipeline_step_attempts"
    __table_args__ = (UniqueConstraint("step_run_id", "attempt"),)

    step_run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_step_runs.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    log_key: Mapped[str | None] = mapped_column(String(500), nullable=True)


class StepCacheRow(EntityMixin, Base):
    """Outputs of a step that succeeded, under its cache key (per project).

    ``step_run_id`` names the step run that made them by value, not by foreign key: the
    cache outlives the run's deletion.
    """

    __tablename__ = "pipeline_step_cache"
    __table_args__ = (UniqueConstraint("project_id", "cache_key"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    cache_key: Mapped[str] = mapped_column(String(64))
    uses: Mapped[str] = mapped_column(String(63))
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    step_run_id: Mapped[str] = mapped_column(String(32))


class PipelineWorkerRow(EntityMixin, Base):
    """A pipeline worker as it last reported: its executor and the shapes of the nodes that
    executor runs steps on (``[{cpus, memory, gpus}]``), so an apply can tell a step that no
    node could ever run."""

    __tablename__ = "pipeline_workers"

    worker: Mapped[str] = mapped_column(String(200), unique=True)
    executor: Mapped[str] = mapped_column(String(20))
    nodes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
