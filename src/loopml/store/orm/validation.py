"""Validation reports: what checking each batch against its table's contract found."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin


class ValidationReportRow(EntityMixin, Base):
    """One checked batch. ``report`` holds the whole ``core.contracts.ValidationReport``."""

    __tablename__ = "validation_reports"

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    table_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("lake_tables.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    rows_checked: Mapped[int] = mapped_column(BigInteger)
    rows_failed: Mapped[int] = mapped_column(BigInteger)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
