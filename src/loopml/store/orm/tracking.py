"""Experiment tracking: experiments, runs, and what runs log.

Layout for search at scale (100,000 runs): every run row carries its ``project_id`` so a
search never joins experiments; the newest value of each metric is kept in
``latest_metrics`` (one row per run and key, indexed by key and value), so filtering and
sorting runs by a metric is one indexed join, never a scan of the metric history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")

KEY_LENGTH = 250
PARAM_VALUE_LENGTH = 6000
TAG_VALUE_LENGTH = 5000


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


class ExperimentRow(EntityMixin, Base):
    """A named group of runs inside a project."""

    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(200))
    description: Mapped[str] = mapped_column(Text, default="")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Set by a soft delete (MLflow's delete-experiment), cleared by a restore."""
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    """MLflow's experiment tags (``set_experiment_tag``), key to value."""


class RunRow(EntityMixin, Base):
    """One training run. ``heartbeat_at`` is refreshed while it runs; a RUNNING run whose
    heartbeat is older than ``heartbeat_timeout_s`` is marked LOST by the sweeper."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_experiment_start", "experiment_id", "start_time"),
        Index("ix_runs_project_start", "project_id", "start_time"),
        # The runs table's page in its default order, read from the index alone (0016).
        Index("ix_runs_project_live_start", "project_id", "deleted_at", "start_time", "id"),
        # The same for top-level runs, the default listing (child runs folded).
        Index(
            "ix_runs_project_top_start",
            "project_id",
            "deleted_at",
            "parent_run_id",
            "start_time",
            "id",
        ),
        Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
    )

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(name_type(200))
    status: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_timeout_s: Mapped[int] = mapped_column(Integer)
    code_version: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(200))
    parent_run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Set by a soft delete (MLflow's delete-run), cleared by a restore; loopml's own
    delete removes the run for good."""


class ParamRow(Base):
    """A run's parameter; once logged, a parameter's value cannot change."""

    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(PARAM_VALUE_LENGTH))


class MetricRow(Base):
    """One point of a metric's history. NaN is kept as ``is_nan`` (SQLite stores NaN as
    NULL), with ``value`` 0.

    A point is unique by everything it says (as in MLflow): a batch sent again after a lost
    answer adds nothing. The constraint's index also serves history reads by run and key.
    """

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint(
            "run_id", "key", "step", "timestamp_ms", "value", "is_nan", name="uq_metrics_point"
        ),
    )

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), _run_fk())
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH))
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class LatestMetricRow(Base):
    """The newest point of each metric of a run (highest step, then latest time): what
    searches filter and sort on."""

    __tablename__ = "latest_metrics"
    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class RunTagRow(Base):
    """A run's tag; tags can be changed and removed."""

    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_key", "key"),)

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH))


class RunInputRow(Base):
    """What a run consumed: dataset versions (``kind='dataset'``), by reference. Indexed by
    reference for the reverse lineage query: which runs used this dataset version?"""

    __tablename__ = "run_inputs"
    __table_args__ = (Index("ix_run_inputs_kind_ref", "kind", "ref"),)

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), primary_key=True)
    ref: Mapped[str] = mapped_column(String(300), primary_key=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LoggedModelRow(EntityMixin, Base):
    """A model a run logged: its package lives under the run's artifacts at ``path``; the
    manifest's SHA-256 anchors the hash of every file in the package."""

    __tablename__ = "logged_models"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), index=True)
    path: Mapped[str] = mapped_column(String(500))
    flavor: Mapped[str] = mapped_column(String(50))
    format: Mapped[str] = mapped_column(String(20))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
