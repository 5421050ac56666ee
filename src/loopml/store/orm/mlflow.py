"""Models MLflow 3 clients log (``/logged-models``): records loopml keeps for them.

An MLflow logged model is created PENDING before its files exist, holds params and tags of
its own, and its files are MLflow's format (an ``MLmodel`` beside a pickle), which loopml
never loads: so it is not a loopml ``LoggedModelRow`` (a verified, servable package) but a
record of its own, with its files under ``core.layout.mlflow_model_prefix``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class MlflowModelRow(EntityMixin, Base):
    """A model an MLflow 3 client logged; ``status`` PENDING, READY or FAILED."""

    __tablename__ = "mlflow_logged_models"
    __table_args__ = (Index("ix_mlflow_logged_models_experiment_name", "experiment_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE")
    )
    source_run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(500))
    model_type: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20))
    status_message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    """Points logged with this model's id: ``[key, value, step, timestamp_ms, run_id]``."""
    actor: Mapped[str] = mapped_column(String(200))
