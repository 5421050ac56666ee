"""Codesets and their versions: immutable trees of training code.

Revision ID: 0015_codesets
Revises: 0014_feature_views
Create Date: 2026-11-23

Types are spelled out here rather than imported from the ORM, so this migration keeps
meaning the same thing when the ORM changes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0015_codesets"
down_revision: str | None = "0014_feature_views"
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
        "codesets",
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", _name(63), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("repository", sa.String(length=1000), nullable=True),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("webhook_secret_hash", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity(),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_codesets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codesets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_codesets_project_id_name")),
    )
    op.create_index(op.f("ix_codesets_project_id"), "codesets", ["project_id"], unique=False)
    op.create_table(
        "codeset_versions",
        sa.Column("codeset_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("archive_key", sa.String(length=1024), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        *_entity(),
        sa.ForeignKeyConstraint(
            ["codeset_id"],
            ["codesets.id"],
            name=op.f("fk_codeset_versions_codeset_id_codesets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codeset_versions")),
        sa.UniqueConstraint(
            "codeset_id", "version", name=op.f("uq_codeset_versions_codeset_id_version")
        ),
        sa.UniqueConstraint(
            "codeset_id",
            "content_hash",
            name=op.f("uq_codeset_versions_codeset_id_content_hash"),
        ),
    )


def downgrade() -> None:
    op.drop_table("codeset_versions")
    op.drop_index(op.f("ix_codesets_project_id"), table_name="codesets")
    op.drop_table("codesets")
