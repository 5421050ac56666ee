"""/api/v1/projects/{project}/datasets."""

from __future__ import annotations

from fastapi import APIRouter

from loopml.api.schemas import ERROR_RESPONSES

PREFIX = "/api/v1/projects/{project}/datasets"
router = APIRouter(prefix=PREFIX, tags=["datasets"], responses=ERROR_RESPONSES)
