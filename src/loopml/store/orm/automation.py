"""Schedules, triggers and their firings: what starts pipeline runs without a person.

Engines on several servers may share one database; each claim is a compare-and-set on these
rows (a schedule's ``next_fire_at``, a trigger's ``cursor``, a ``waiting`` flag), so one
tick or one event fires once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type
from loopml.store.orm.events import EVENT_ID_TYPE


class ScheduleRow(EntityMixin, Base):
    """A cron schedule of a pipeline; due when enabled and ``next_fire_at`` has come."""

    __tablename__ = "pipeline_schedules"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        Index(None, "enabled", "next_fire_at"),
    )

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(name_type(63))
    pipeline_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    concurrency: Mapped[str] = mapped_column(String(8))
    enabled: Mapped[bool] = mapped_column(Boolean)
    next_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    waiting: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(200))


class TriggerRow(EntityMixin, Base):
    """An event (or webhook) trigger of a pipeline.

    ``cursor`` is the id of the last event it has read; ``rows_pending`` the rows appended
    since it last fired (``min_rows``); ``secret_hash`` the SHA-256 of a webhook's secret.
    """

    __tablename__ = "pipeline_triggers"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(name_type(63))
    pipeline_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    on: Mapped[str] = mapped_column(String(40))
    where: Mapped[dict[str, Any]] = mapped_column(JSON)
    min_rows: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rows_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    cursor: Mapped[int] = mapped_column(EVENT_ID_TYPE, default=0)
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    concurrency: Mapped[str] = mapped_column(String(8))
    enabled: Mapped[bool] = mapped_column(Boolean)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    waiting: Mapped[bool] = mapped_column(Boolean, default=False)
    waiting_event_id: Mapped[int | None] = mapped_column(EVENT_ID_TYPE, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))


class FiringRow(EntityMixin, Base):
    """One firing of a schedule or trigger (``owner_id`` names it by value: history stays
    readable while the owner exists and goes with it)."""

    __tablename__ = "pipeline_firings"
    __table_args__ = (Index(None, "owner_id", "created_at"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(name_type(63))
    outcome: Mapped[str] = mapped_column(String(10))
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    event_id: Mapped[int | None] = mapped_column(EVENT_ID_TYPE, nullable=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
