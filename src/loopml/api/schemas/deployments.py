"""Request bodies and parameters of the deployment routes.

A deployment's options, their defaults and bounds, are ``loopml.core.deployments``'
(``DeploymentOptions``); the bodies here use them so that generated clients and fuzzers know
them. Rules across fields (``min_replicas`` at most ``max_replicas``, scale-to-zero needs
``min_replicas`` 0) are checked by the control plane after the model references are looked
up, so an unknown model is 404 whatever else is wrong.
"""

from __future__ import annotations

from typing import Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.deployments import (
    DEPLOYMENT_NAME_HELP,
    DEPLOYMENT_NAME_PATTERN,
    FEATURE_SERVING_HELP,
    MAX_REPLICAS,
    MODEL_REF_PATTERN,
    SERVING_AUTH_HELP,
    Canary,
    DeploymentRequest,
    FeatureServing,
    Resources,
    Revision,
    ServingAuth,
)
from loopml.core.refs import MAX_VERSION

_NAME: dict[str, Any] = {"pattern": DEPLOYMENT_NAME_PATTERN.pattern}


def deployment_path() -> Any:
    """The ``{name}`` path parameter: a deployment's name."""
    return Path(description=DEPLOYMENT_NAME_HELP, max_length=40, json_schema_extra=_NAME)


def cursor_query() -> Any:
    """An optional ``cursor`` query parameter (a deployment name)."""
    return Query(
        default=None,
        max_length=40,
        description="The next_cursor of the previous page.",
        json_schema_extra=_NAME,
    )


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentCreate(DeploymentRequest):
    """Body of ``POST /api/v1/projects/{project}/deployments``: ``loopml.core.deployments``'
    ``DeploymentRequest``, which the client and ``loopml deploy`` build."""


class DeploymentUpdate(_Request):
    """Body of ``PATCH .../deployments/{name}``: the fields to change; ``null`` removes a
    canary, a shadow or scale-to-zero."""

    model: str | None = Field(default=None, max_length=200, pattern=MODEL_REF_PATTERN)
    min_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)
    resources: Resources | None = None
    canary: Canary | None = None
    shadow: str | None = Field(default=None, max_length=200, pattern=MODEL_REF_PATTERN)
    scale_to_zero_after_s: int | None = Field(default=None, ge=10, le=7 * 86400)
    auth: ServingAuth | None = Field(default=None, description=SERVING_AUTH_HELP)
    features: FeatureServing | None = Field(default=None, description=FEATURE_SERVING_HELP)

    def changes(self) -> dict[str, Any]:
        """The fields given (``null`` kept where it means "remove")."""
        given = self.model_dump(mode="json", include=self.model_fields_set)
        removable = {"canary", "shadow", "scale_to_zero_after_s", "features"}
        return {k: v for k, v in given.items() if v is not None or k in removable}


class ScaleRequest(_Request):
    """Body of ``POST .../deployments/{name}/scale``: ``replicas``, or the two bounds."""

    replicas: int | None = Field(
        default=None, ge=0, le=MAX_REPLICAS, description="Sets both bounds."
    )
    min_replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    max_replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)


class RollbackRequest(_Request):
    """Body of ``POST .../deployments/{name}/rollback``."""

    revision: int = Field(ge=1, le=MAX_VERSION, description="The revision to serve again.")


class RevisionList(BaseModel):
    """A deployment's revisions, oldest first."""

    items: list[Revision]


class DeploymentLogs(BaseModel):
    """The last lines the deployment's replicas wrote (empty when its target keeps none)."""

    lines: list[str]
