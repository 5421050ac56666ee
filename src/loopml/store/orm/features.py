"""Feature views, their applied versions, and what the online store holds of each.

``materialized_*`` is the online store's state for the view: which version was written and
up to which event time (the watermark an incremental materialization starts after).
``materializing_*`` is the lease of the run under way, if any: one run of a view at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type


class FeatureViewRow(EntityMixin, Base):
    """A named feature view of a project; ``latest_version`` is its newest version."""

    __tablename__ = "feature_views"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    latest_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    materialized_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    materialized_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    materialized_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    materialized_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    materializing_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    materializing_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FeatureViewVersionRow(EntityMixin, Base):
    """One applied version: the YAML as given and its normalized spec."""

    __tablename__ = "feature_view_versions"
    __table_args__ = (UniqueConstraint("view_id", "version"),)

    view_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feature_views.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    spec_hash: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
