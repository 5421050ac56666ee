"""Soft deletion of runs and experiments (MLflow's delete and restore), and the models MLflow 3
clients log (``mlflow_logged_models``).

Revision ID: 0012_mlflow
Revises: 0011_auth
Create Date: 2026-11-22

MLflow clients delete runs and experiments softly and may restore them; loopml's own
``loopml runs delete`` still removes a run for good. A soft-deleted row keeps everything it
logged and only carries the time it was deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012_mlflow"
down_revision: str | None = "0011_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    # Byte-wise ordering on PostgreSQL, as SQLite does (see orm/base.py name_type).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _fk(column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_mlflow_logged_models_{column}_{target}"),
        ondelete=ondelete,
    )


def _columns() -> list[Any]:
    return [
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("name", _name(500), nullable=False),
        sa.Column("model_type", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    for table in ("runs", "experiments"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "mlflow_logged_models",
        *_columns(),
        _fk("project_id", "projects"),
        _fk("experiment_id", "experiments"),
        _fk("source_run_id", "runs", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mlflow_logged_models")),
    )
    with op.batch_alter_table("mlflow_logged_models") as batch:
        batch.create_index(
            batch.f("ix_mlflow_logged_models_experiment_name"), ["experiment_id", "name"]
        )
        batch.create_index(batch.f("ix_mlflow_logged_models_project_id"), ["project_id"])
        batch.create_index(batch.f("ix_mlflow_logged_models_source_run_id"), ["source_run_id"])


def downgrade() -> None:
    op.drop_table("mlflow_logged_models")
    for table in ("runs", "experiments"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deleted_at")
