"""Lake tables: the metadata row of each Delta table of a project.

The data lives in the artifact store as a Delta Lake table (Parquet files plus a
transaction log) at ``core.layout.lake_table_prefix``; this row names it, caches what the
last commit left (version, row count, schema) and holds the table's validation contract.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class LakeTableRow(EntityMixin, Base):
    """One table of a project's lake. ``version`` is -1 until the first commit."""

    __tablename__ = "lake_tables"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=-1)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    contract: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
