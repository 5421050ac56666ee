"""Feature views: the lease a materialize run holds, so two runs of a view never overlap.

Revision ID: 0017_materialize_lease
Revises: 0016_runs_live_start
Create Date: 2026-11-24

``materializing_by`` names the run holding the view's lease and ``materializing_until``
when it lapses (a run that died frees the view then). Types are spelled out here rather
than imported from the ORM, so this migration keeps meaning the same thing later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_materialize_lease"
down_revision: str | None = "0016_runs_live_start"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feature_views", schema=None) as batch_op:
        batch_op.add_column(sa.Column("materializing_by", sa.String(32), nullable=True))
        batch_op.add_column(
            sa.Column("materializing_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("feature_views", schema=None) as batch_op:
        batch_op.drop_column("materializing_until")
        batch_op.drop_column("materializing_by")
