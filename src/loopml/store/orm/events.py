"""The ``events`` table: the append-only feed of state changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, UTCDateTime, name_type

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
EVENT_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class EventRow(Base):
    """One event. Rows are only ever inserted: there is no update or delete path.

    ``project`` is deliberately not a foreign key: events are the audit trail and must
    outlive the project they describe.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_id", "project", "id"),
        Index("ix_events_type_id", "type", "id"),
        Index("ix_events_time", "time"),
    )

    id: Mapped[int] = mapped_column(EVENT_ID_TYPE, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    project: Mapped[str | None] = mapped_column(name_type(63))
    type: Mapped[str] = mapped_column(name_type(100))
    subject: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
