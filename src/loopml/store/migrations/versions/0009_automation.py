"""Schedules and triggers of pipelines, and the history of their firings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Types are spelled out here rather than imported from the ORM, so this migration keeps
meaning the same thing when the ORM changes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    # Byte-wise ordering on PostgreSQL, as SQLite does (see orm/base.py name_type).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _event_id() -> sa.types.TypeEngine[int]:
    # As events.id: SQLite's INTEGER, PostgreSQL's BIGINT.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _entity() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "pipeline_schedules",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("pipeline_id", sa.String(length=32), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(length=32), nullable=True),
        sa.Column("waiting", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity(),
        _fk("pipeline_schedules", "pipeline_id", "pipelines"),
        _fk("pipeline_schedules", "project_id", "projects"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_schedules")),
        sa.UniqueConstraint(
            "project_id", "name", name=op.f("uq_pipeline_schedules_project_id_name")
        ),
    )
    with op.batch_alter_table("pipeline_schedules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipeline_schedules_enabled_next_fire_at"),
            ["enabled", "next_fire_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_pipeline_schedules_pipeline_id"), ["pipeline_id"], unique=False
        )

    op.create_table(
        "pipeline_triggers",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("pipeline_id", sa.String(length=32), nullable=False),
        sa.Column("on", sa.String(length=40), nullable=False),
        sa.Column("where", sa.JSON(), nullable=False),
        sa.Column("min_rows", sa.BigInteger(), nullable=True),
        sa.Column("rows_pending", sa.BigInteger(), nullable=False),
        sa.Column("cursor", _event_id(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("concurrency", sa.String(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(length=32), nullable=True),
        sa.Column("waiting", sa.Boolean(), nullable=False),
        sa.Column("waiting_event_id", _event_id(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity(),
        _fk("pipeline_triggers", "pipeline_id", "pipelines"),
        _fk("pipeline_triggers", "project_id", "projects"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_triggers")),
        sa.UniqueConstraint(
            "project_id", "name", name=op.f("uq_pipeline_triggers_project_id_name")
        ),
    )
    with op.batch_alter_table("pipeline_triggers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipeline_triggers_pipeline_id"), ["pipeline_id"], unique=False
        )

    op.create_table(
        "pipeline_firings",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("event_id", _event_id(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        *_entity(),
        _fk("pipeline_firings", "project_id", "projects"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_firings")),
    )
    with op.batch_alter_table("pipeline_firings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pipeline_firings_owner_id_created_at"),
            ["owner_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_firings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_firings_owner_id_created_at"))
    op.drop_table("pipeline_firings")
    with op.batch_alter_table("pipeline_triggers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_triggers_pipeline_id"))
    op.drop_table("pipeline_triggers")
    with op.batch_alter_table("pipeline_schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_schedules_pipeline_id"))
        batch_op.drop_index(batch_op.f("ix_pipeline_schedules_enabled_next_fire_at"))
    op.drop_table("pipeline_schedules")
