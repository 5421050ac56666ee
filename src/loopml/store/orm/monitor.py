"""Monitoring: reference profiles of model versions, windows over the prediction log, the
monitor's cursors and episode states, alert rules and webhook deliveries."""

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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type


def _project() -> Mapped[str]:
    return mapped_column(String(32), ForeignKey("projects.id", ondelete="CASCADE"))


class ReferenceProfileRow(EntityMixin, Base):
    """A model version's reference profile (``status`` ``ready``), or why it has none
    (``off`` with ``reason``)."""

    __tablename__ = "monitor_references"
    __table_args__ = (UniqueConstraint("project_id", "model", "version"),)

    project_id: Mapped[str] = _project()
    model: Mapped[str] = mapped_column(name_type(63))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(300))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)


class MonitorWindowRow(EntityMixin, Base):
    """One tumbling window of one deployment's served model version: its mergeable counts
    (``state``) and the figures computed from them (``summary``)."""

    __tablename__ = "monitor_windows"
    __table_args__ = (
        UniqueConstraint("project_id", "deployment", "model", "version", "size", "start"),
        Index(None, "project_id", "deployment", "size", "start"),
    )

    project_id: Mapped[str] = _project()
    deployment: Mapped[str] = mapped_column(name_type(40))
    model: Mapped[str] = mapped_column(name_type(63))
    version: Mapped[int] = mapped_column(Integer)
    size: Mapped[str] = mapped_column(String(8))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)


class MonitorCursorRow(EntityMixin, Base):
    """A small named state of the monitor per deployment: how far it has read the
    prediction log and the feedback (watermarks), and which episodes are open."""

    __tablename__ = "monitor_cursors"
    __table_args__ = (UniqueConstraint("project_id", "deployment", "key"),)

    project_id: Mapped[str] = _project()
    deployment: Mapped[str] = mapped_column(name_type(40))
    key: Mapped[str] = mapped_column(name_type(100))
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertRuleRow(EntityMixin, Base):
    """An alert rule on a deployment's window metric, with its state machine."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = _project()
    name: Mapped[str] = mapped_column(name_type(63))
    deployment: Mapped[str] = mapped_column(name_type(40))
    metric: Mapped[str] = mapped_column(String(60))
    comparator: Mapped[str] = mapped_column(String(2))
    threshold: Mapped[float] = mapped_column(Float)
    clear_threshold: Mapped[float] = mapped_column(Float)
    for_s: Mapped[float] = mapped_column(Float)
    window: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(8))
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    silenced_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    state: Mapped[str] = mapped_column(String(8))
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))


class AlertDeliveryRow(EntityMixin, Base):
    """One webhook notification: where it went, how it ended, after how many attempts."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index(None, "rule_id", "created_at"),)

    project_id: Mapped[str] = _project()
    rule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("alert_rules.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2000))
    event: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(500))
