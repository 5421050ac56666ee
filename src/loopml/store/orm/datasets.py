"""Dataset snapshots, SQL transforms and record-ingest idempotency keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.store.orm.base import Base, EntityMixin, name_type


class DatasetRow(EntityMixin, Base):
    """A named dataset of a project; its immutable versions are ``DatasetVersionRow``."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0)


class DatasetVersionRow(EntityMixin, Base):
    """One immutable snapshot: where it came from, what it holds, and its profile.

    ``sources`` lists ``{"table": name, "version": n}`` of every lake table version read;
    vacuum keeps those versions' files. ``data_key`` is the snapshot's Parquet file in the
    artifact store. ``split`` is null until a train/eval split is frozen.
    """

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    dataset_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_key: Mapped[str] = mapped_column(String(1024))
    split: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))


class TransformRow(EntityMixin, Base):
    """A named SQL transform that materializes ``into_table``; ``revision`` counts edits."""

    __tablename__ = "transforms"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(name_type(63))
    description: Mapped[str] = mapped_column(Text, default="")
    sql: Mapped[str] = mapped_column(Text)
    into_table: Mapped[str] = mapped_column(name_type(63))
    mode: Mapped[str] = mapped_column(String(16), default="overwrite")
    revision: Mapped[int] = mapped_column(Integer, default=1)


class TransformRunRow(EntityMixin, Base):
    """One application of a transform: the input table versions it read (its lineage) and
    the output table version it wrote."""

    __tablename__ = "transform_runs"

    transform_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("transforms.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    sql: Mapped[str] = mapped_column(Text)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    output_table: Mapped[str] = mapped_column(name_type(63))
    output_version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))


class IngestKeyRow(EntityMixin, Base):
    """An ``Idempotency-Key`` of a record post that landed: a retry answers with ``version``
    and ``rows`` again instead of appending twice. ``body_sha256`` tells a retry from a
    different post that reuses the key."""

    __tablename__ = "ingest_keys"
    __table_args__ = (UniqueConstraint("table_id", "key"),)

    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    table_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("lake_tables.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(200))
    body_sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)
