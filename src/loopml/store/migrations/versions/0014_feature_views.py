"""Feature views and their versions (with the online store's materialization state).

Revision ID: 0014_feature_views
Revises: 0013_monitor
Create Date: 2026-11-23

Types are spelled out here rather than imported from the ORM, so this migration keeps
meaning the same thing when the ORM changes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014_feature_views"
down_revision: str | None = "0013_monitor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    # Byte-wise ordering on PostgreSQL, as SQLite does (see orm/base.py name_type).
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _entity() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "feature_views",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("materialized_version", sa.Integer(), nullable=True),
        sa.Column("materialized_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("materialized_rows", sa.BigInteger(), nullable=False),
        sa.Column("materialized_at", sa.DateTime(timezone=True), nullable=True),
        *_entity(),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_feature_views_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_views")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_feature_views_project_id_name")),
    )
    op.create_index(
        op.f("ix_feature_views_project_id"), "feature_views", ["project_id"], unique=False
    )
    op.create_table(
        "feature_view_versions",
        sa.Column("view_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity(),
        sa.ForeignKeyConstraint(
            ["view_id"],
            ["feature_views.id"],
            name=op.f("fk_feature_view_versions_view_id_feature_views"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_view_versions")),
        sa.UniqueConstraint(
            "view_id", "version", name=op.f("uq_feature_view_versions_view_id_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("feature_view_versions")
    op.drop_index(op.f("ix_feature_views_project_id"), table_name="feature_views")
    op.drop_table("feature_views")
