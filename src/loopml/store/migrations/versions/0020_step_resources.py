"""Step resources: the CPUs a step run counts for, and the workers' reports of their nodes.

Revision ID: 0020_step_resources
Revises: 0019_mlflow_compat
Create Date: 2026-11-25

``pipeline_step_runs.cpus`` is what a step asked for (``resources.cpus``, 1 when it asked
for nothing, as every existing row did): a local worker claims a step only while its CPUs
are free. ``pipeline_workers`` holds each worker's last report of the nodes its executor
runs steps on, which ``pipelines apply`` checks a step's resources against. Types are spelled
out here rather than imported from the ORM, so this migration keeps meaning the same thing
later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_step_resources"
down_revision: str | None = "0019_mlflow_compat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, not batch mode: batch mode rebuilds the table on SQLite, which the
    # attempts' foreign keys to existing step runs refuse.
    op.add_column(
        "pipeline_step_runs",
        sa.Column("cpus", sa.Float(), nullable=False, server_default=sa.text("1")),
    )
    op.create_table(
        "pipeline_workers",
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("executor", sa.String(length=20), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_workers")),
        sa.UniqueConstraint("worker", name=op.f("uq_pipeline_workers_worker")),
    )
    op.create_index(
        op.f("ix_pipeline_workers_seen_at"), "pipeline_workers", ["seen_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pipeline_workers_seen_at"), table_name="pipeline_workers")
    op.drop_table("pipeline_workers")
    with op.batch_alter_table("pipeline_step_runs", schema=None) as batch_op:
        batch_op.drop_column("cpus")
