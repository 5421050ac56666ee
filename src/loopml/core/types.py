"""Domain objects that leave the store. ORM objects never do."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Project(BaseModel):
    """A project: the namespace that owns tables, runs, models and deployments."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class Event(BaseModel):
    """One state change, append-only. Triggers, webhooks and the audit trail read these."""

    model_config = ConfigDict(frozen=True)

    id: int
    time: datetime
    project: str | None
    type: str
    subject: str
    payload: dict[str, Any]
    actor: str


class Artifact(BaseModel):
    """One stored file of a project, addressed by its key."""

    model_config = ConfigDict(frozen=True)

    key: str
    size: int
    modified: datetime
    sha256: str | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next one."""

    items: list[T]
    next_cursor: str | None = None
