"""The ``projects`` table."""

from __future__ import annotations

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class ProjectRow(EntityMixin, Base):
    """One project; its name is what every other table and path refers to."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(name_type(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
