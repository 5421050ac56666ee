"""The one declarative base of the metadata schema, and the columns most tables share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from loopml.core.clock import as_utc, utcnow
from loopml.core.ids import new_id

# Constraint names must be stable: migrations drop and alter constraints by name, and
# SQLite batch migrations cannot find unnamed ones.
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect.

    SQLite has no time zones: values are stored as naive UTC text, which also keeps range
    comparisons (``time >= since``) correct as plain string comparisons. Values read back
    are always aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def name_type(length: int) -> String:
    """A name column compared byte-wise on every dialect.

    PostgreSQL's default collation follows the locale (``a-c`` sorts after ``ab`` under
    en_US), so keyset pagination would order differently from SQLite; ``C`` makes both
    dialects order the same.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every metadata table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at(context: Any) -> Any:
    # A new row's updated_at equals its created_at exactly, not a microsecond later.
    return context.get_current_parameters()["created_at"]


class EntityMixin:
    """``id``, ``created_at`` and ``updated_at``, all set by Python so every dialect agrees."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=_created_at, onupdate=utcnow
    )
