"""The promotion gate: policies per registered model, evaluations and verdicts per version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin


class GatePolicyRow(EntityMixin, Base):
    """The gate policy of one registered model (``core.gate.GatePolicy`` as JSON)."""

    __tablename__ = "gate_policies"

    model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("registered_models.id", ondelete="CASCADE"), unique=True
    )
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))


class ModelEvaluationRow(EntityMixin, Base):
    """A version's evaluation report on one eval set; re-evaluating replaces it."""

    __tablename__ = "model_evaluations"
    __table_args__ = (UniqueConstraint("version_id", "eval_hash"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    eval_hash: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))


class GateResultRow(EntityMixin, Base):
    """One verdict of the gate on a version; the newest one decides promotion."""

    __tablename__ = "gate_results"

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    passed: Mapped[bool] = mapped_column(Boolean)
    eval_hash: Mapped[str] = mapped_column(String(64))
    champion_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
