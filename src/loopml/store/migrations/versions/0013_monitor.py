"""Monitoring: reference profiles, prediction-log windows, the monitor's cursors, alert rules
and webhook deliveries.

Revision ID: 0013_monitor
Revises: 0012_mlflow
Create Date: 2026-11-22

Types are spelled out here rather than imported from the ORM, so this migration keeps
meaning the same thing when the ORM changes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013_monitor"
down_revision: str | None = "0012_mlflow"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    # Byte-wise ordering on PostgreSQL, as SQLite does (see orm/base.py name_type).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _entity(table: str) -> list[Any]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f(f"fk_{table}_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def upgrade() -> None:
    op.create_table(
        "monitor_references",
        sa.Column("model", _name(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        *_entity("monitor_references"),
        sa.UniqueConstraint(
            "project_id",
            "model",
            "version",
            name=op.f("uq_monitor_references_project_id_model_version"),
        ),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("deployment", _name(40), nullable=False),
        sa.Column("model", _name(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("size", sa.String(length=8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        *_entity("monitor_windows"),
        sa.UniqueConstraint(
            "project_id",
            "deployment",
            "model",
            "version",
            "size",
            "start",
            name=op.f("uq_monitor_windows_project_id_deployment_model_version_size_start"),
        ),
    )
    with op.batch_alter_table("monitor_windows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitor_windows_project_id_deployment_size_start"),
            ["project_id", "deployment", "size", "start"],
            unique=False,
        )
    op.create_table(
        "monitor_cursors",
        sa.Column("deployment", _name(40), nullable=False),
        sa.Column("key", _name(100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        *_entity("monitor_cursors"),
        sa.UniqueConstraint(
            "project_id",
            "deployment",
            "key",
            name=op.f("uq_monitor_cursors_project_id_deployment_key"),
        ),
    )
    op.create_table(
        "alert_rules",
        sa.Column("name", _name(63), nullable=False),
        sa.Column("deployment", _name(40), nullable=False),
        sa.Column("metric", sa.String(length=60), nullable=False),
        sa.Column("comparator", sa.String(length=2), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("clear_threshold", sa.Float(), nullable=False),
        sa.Column("for_s", sa.Float(), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("webhook", sa.String(length=2000), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("silenced_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity("alert_rules"),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_alert_rules_project_id_name")),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
        *_entity("alert_deliveries"),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alert_deliveries_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_deliveries_rule_id_created_at"),
            ["rule_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_rule_id_created_at"))
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rules")
    op.drop_table("monitor_cursors")
    with op.batch_alter_table("monitor_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_windows_project_id_deployment_size_start"))
    op.drop_table("monitor_windows")
    op.drop_table("monitor_references")
