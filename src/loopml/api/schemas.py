"""Request and response bodies of the API (the domain objects of ``core.types`` are reused)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Request):
    """Body of ``POST /api/v1/projects``."""

    name: str = Field(max_length=63, description="Lowercase letters, digits, '_' or '-'.")
    description: str = Field(default="", max_length=4000)


class ProjectUpdate(_Request):
    """Body of ``PATCH /api/v1/projects/{name}``."""

    description: str = Field(max_length=4000)


class HealthReport(BaseModel):
    """Liveness and readiness of the server."""

    status: str = Field(description="'ok' when ready, 'unavailable' otherwise.")
    version: str
    checks: dict[str, str]
