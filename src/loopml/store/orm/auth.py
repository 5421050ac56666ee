"""Users, their roles per project, and their API tokens (only a hash of each token)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, UTCDateTime, name_type


class UserRow(EntityMixin, Base):
    """A user; ``password_hash`` is an argon2id hash (PHC string), never the password."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(name_type(63), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class MembershipRow(EntityMixin, Base):
    """A user's role in a project (1 viewer, 2 editor, 3 admin)."""

    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[int] = mapped_column(Integer)


class ApiTokenRow(EntityMixin, Base):
    """An API token: its public ``prefix`` and the HMAC-SHA256 of the whole token."""

    __tablename__ = "api_tokens"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[int] = mapped_column(Integer)
    resource: Mapped[str | None] = mapped_column(String(140), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
