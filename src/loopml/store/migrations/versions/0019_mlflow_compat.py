"""MLflow compatibility: experiment tags, and the metrics logged for MLflow 3 logged models.

Revision ID: 0019_mlflow_compat
Revises: 0018_runs_top_start
Create Date: 2026-11-25

``experiments.tags`` holds MLflow's experiment tags (``set_experiment_tag``) as a JSON
object; ``mlflow_logged_models.metrics`` the points an MLflow 3 client logged with a
``model_id`` (``[key, value, step, timestamp_ms, run_id]`` each). Both default to empty for
existing rows. Types are spelled out here rather than imported from the ORM, so this
migration keeps meaning the same thing later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_mlflow_compat"
down_revision: str | None = "0018_runs_top_start"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, not batch mode: batch mode rebuilt `experiments` on SQLite (a copy,
    # then DROP TABLE), which foreign keys from existing runs refuse.
    op.add_column(
        "experiments",
        sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column(
        "mlflow_logged_models",
        sa.Column("metrics", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("mlflow_logged_models", schema=None) as batch_op:
        batch_op.drop_column("metrics")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_column("tags")
