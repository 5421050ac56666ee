"""The runs table's page index for top-level runs: child runs (AutoML trials) are folded
under their parent by default, so the default page reads a project's live runs without a
parent.

Revision ID: 0018_runs_top_start
Revises: 0017_materialize_lease
Create Date: 2026-11-25

``(project_id, deleted_at, parent_run_id, start_time, id)`` covers the folded page as
``ix_runs_project_live_start`` covers the flat one: a page jumped to by its row offset
skips index entries without reading the runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_runs_top_start"
down_revision: str | None = "0017_materialize_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_project_top_start",
            ["project_id", "deleted_at", "parent_run_id", "start_time", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_project_top_start")
