"""Deployments and their revisions (see ``loopml.core.deployments``).

A deployment row holds what the control plane decided (spec, traffic, which revision plays
which role) and what the target last reported (status, ready replicas). Revisions are the
history: one row per resolved model version a deployment has served, numbered 1, 2, 3, ...
They name the model and version by value, not by foreign key, so the history outlives a
deleted version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class DeploymentRow(EntityMixin, Base):
    """One deployment of a project; ``traffic`` maps revision numbers (as text) to percent."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(40))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    status_message: Mapped[str] = mapped_column(Text, default="")
    traffic: Mapped[dict[str, int]] = mapped_column(JSON)
    primary_revision: Mapped[int] = mapped_column(Integer)
    canary_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shadow_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replicas_ready: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(200))


class DeploymentRevisionRow(EntityMixin, Base):
    """Revision ``number`` of a deployment: the model version it resolved to, and from what."""

    __tablename__ = "deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "number"),)

    deployment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deployments.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(name_type(63))
    version: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(10))
