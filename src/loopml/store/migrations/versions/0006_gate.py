"""The promotion gate: policies per model, evaluation reports and verdicts per version.

Revision ID: 0006
Revises: 0005
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

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_policies",
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_gate_policies_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_policies")),
        sa.UniqueConstraint("model_id", name=op.f("uq_gate_policies_model_id")),
    )
    op.create_table(
        "gate_results",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("eval_hash", sa.String(length=64), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_gate_results_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_gate_results_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_results")),
    )
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gate_results_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gate_results_version_id"), ["version_id"], unique=False
        )

    op.create_table(
        "model_evaluations",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("eval_hash", sa.String(length=64), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_model_evaluations_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_evaluations_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_evaluations")),
        sa.UniqueConstraint(
            "version_id", "eval_hash", name=op.f("uq_model_evaluations_version_id_eval_hash")
        ),
    )
    with op.batch_alter_table("model_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_evaluations_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_model_evaluations_version_id"), ["version_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("model_evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_evaluations_version_id"))
        batch_op.drop_index(batch_op.f("ix_model_evaluations_project_id"))

    op.drop_table("model_evaluations")
    with op.batch_alter_table("gate_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_results_version_id"))
        batch_op.drop_index(batch_op.f("ix_gate_results_project_id"))

    op.drop_table("gate_results")
    op.drop_table("gate_policies")
