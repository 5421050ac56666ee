"""Stream sources: a broker subject or key consumed into a lake table.

The row holds the stream's definition, the state its last commit recorded (``gen``, the
committed message ids in ``done``, the counters) and its consumer's last report. The
commit state is written only in the transaction that records a lake commit, and only by a
newer generation (``gen`` is a compare-and-set), so a late or replayed record never moves it
back. One consumer holds a stream at a time (``owner``, renewed by its heartbeat): two
would each commit from their own view of ``done``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type


class StreamRow(EntityMixin, Base):
    """A stream source of a project."""

    __tablename__ = "stream_sources"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(name_type(63))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    gen: Mapped[int] = mapped_column(BigInteger, default=0)
    done: Mapped[list[Any]] = mapped_column(JSON)
    messages: Mapped[int] = mapped_column(BigInteger, default=0)
    dead_letters: Mapped[int] = mapped_column(BigInteger, default=0)
    last_commit_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="stopped")
    lag: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """The consumer holding the stream (host:pid:nonce), while its heartbeat is fresh."""
    actor: Mapped[str] = mapped_column(String(200))
