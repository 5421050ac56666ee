"""Codesets and their versions: immutable trees of code, identified by their content hash.

A version's files live in the artifact store as one archive (``archive_key``); the row keeps
the file list with each file's SHA-256, and the git commit it came from when there is one.
``webhook_secret_hash`` is the SHA-256 of the secret its push webhook checks (as a
trigger's), and ``repository`` / ``branch`` what that webhook reads on the server.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class CodesetRow(EntityMixin, Base):
    """A named codeset of a project; ``latest_version`` is its newest version (0: none)."""

    __tablename__ = "codesets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    latest_version: Mapped[int] = mapped_column(Integer)
    repository: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    branch: Mapped[str | None] = mapped_column(String(255), nullable=True)
    webhook_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(200))


class CodesetVersionRow(EntityMixin, Base):
    """One version: its content hash (unique in the codeset), files, commit and archive."""

    __tablename__ = "codeset_versions"
    __table_args__ = (
        UniqueConstraint("codeset_id", "version"),
        UniqueConstraint("codeset_id", "content_hash"),
    )

    codeset_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("codesets.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    archive_key: Mapped[str] = mapped_column(String(1024))
    actor: Mapped[str] = mapped_column(String(200))
