"""/api/v1/projects/{project}/transforms."""

from __future__ import annotations

from fastapi import APIRouter

from loopml.api.schemas import ERROR_RESPONSES

PREFIX = "/api/v1/projects/{project}/transforms"
router = APIRouter(prefix=PREFIX, tags=["transforms"], responses=ERROR_RESPONSES)
