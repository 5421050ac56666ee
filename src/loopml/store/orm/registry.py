"""The model registry: registered models, their versions, aliases and tags.

A version points at the model a run logged (``logged_model_id``); the run and that model
cannot be deleted while a version refers to them (``RESTRICT``).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type
from loopml.store.orm.tracking import KEY_LENGTH, TAG_VALUE_LENGTH


class RegisteredModelRow(EntityMixin, Base):
    """A named model of a project, with its numbered versions."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    description: Mapped[str] = mapped_column(Text, default="")


class ModelVersionRow(EntityMixin, Base):
    """Version ``version`` of a registered model. Status PENDING -> READY (every file present
    and its hash verified) or FAILED (``status_message`` says why)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_model_versions_run", "run_id"),
    )

    model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("registered_models.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="RESTRICT"))
    logged_model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("logged_models.id", ondelete="RESTRICT")
    )
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    status_message: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200))


class ModelAliasRow(Base):
    """A movable name (``champion``, ``challenger``, ...) pointing at one version."""

    __tablename__ = "model_aliases"

    model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(name_type(63), primary_key=True)
    version_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )


class ModelTagRow(Base):
    """A tag on a registered model."""

    __tablename__ = "model_tags"

    model_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH))


class ModelVersionTagRow(Base):
    """A tag on a model version."""

    __tablename__ = "model_version_tags"

    version_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(name_type(KEY_LENGTH), primary_key=True)
    value: Mapped[str] = mapped_column(String(TAG_VALUE_LENGTH))
