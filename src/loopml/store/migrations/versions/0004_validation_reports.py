"""Validation reports: what checking each batch against its table's contract found.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Types are spelled out here rather than imported from the ORM, so this migration keeps
meaning the same thing when the ORM changes later.

Every migration must run on SQLite and PostgreSQL: tests/unit/store/test_migrations.py
upgrades an empty database on both and compares the result with the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "validation_reports",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("table_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("rows_checked", sa.BigInteger(), nullable=False),
        sa.Column("rows_failed", sa.BigInteger(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_validation_reports_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["table_id"],
            ["lake_tables.id"],
            name=op.f("fk_validation_reports_table_id_lake_tables"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_reports")),
    )
    with op.batch_alter_table("validation_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_validation_reports_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_validation_reports_table_id"), ["table_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("validation_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_validation_reports_table_id"))
        batch_op.drop_index(batch_op.f("ix_validation_reports_project_id"))

    op.drop_table("validation_reports")
