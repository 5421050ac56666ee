"""Request bodies and parameters of the deployment routes.

The fields and rules mirror ``loopml.core.deployments.DeploymentSpec``, declared here so that
generated clients and fuzzers know them. Rules across fields (``min_replicas`` at most
``max_replicas``, scale-to-zero needs ``min_replicas`` 0) are checked by the control plane
after the model references are looked up, so an unknown model is 404 whatever else is wrong.
"""

from __future__ import annotations

from typing import Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.deployments import (
    DEPLOYMENT_NAME_PATTERN,
    MAX_REPLICAS,
    MODEL_REF_PATTERN,
    Canary,
    FeatureServing,
    Resources,
    Revision,
    ServingAuth,
    Target,
)
from loopml.core.refs import MAX_VERSION

_NAME: dict[str, Any] = {"pattern": DEPLOYMENT_NAME_PATTERN.pattern}
_NAME_HELP = "1 to 40 lowercase letters, digits or '-', starting with a letter ('churn-api')."
_AUTH_HELP = (
    "With authentication on: 'token' (prediction paths ask for a bearer token) or 'none' "
    "(anyone who reaches the gateway may predict). With authentication off, all are open."
)


def deployment_path() -> Any:
    """The ``{name}`` path parameter: a deployment's name."""
    return Path(description=_NAME_HELP, max_length=40, json_schema_extra=_NAME)


def cursor_query() -> Any:
    """An optional ``cursor`` query parameter (a deployment name)."""
    return Query(
        default=None,
        max_length=40,
        description="The next_cursor of the previous page.",
        json_schema_extra=_NAME,
    )


_FEATURES_HELP = (
    "Feature views whose online values the gateway adds to each /predict instance, by the "
    "views' entity keys: {views: [...], missing: reject|default, defaults: {...}}."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentCreate(_Request):
    """Body of ``POST /api/v1/projects/{project}/deployments``."""

    name: str = Field(max_length=40, description=_NAME_HELP, json_schema_extra=_NAME)
    model: str = Field(
        max_length=200,
        pattern=MODEL_REF_PATTERN,
        description="'churn/3', 'churn@champion' (followed when the alias moves) or 'churn' "
        "(the newest READY version).",
    )
    min_replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS, description="0: start on demand.")
    max_replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    resources: Resources = Field(default_factory=Resources)
    canary: Canary | None = Field(default=None, description="A second model and its share.")
    shadow: str | None = Field(
        default=None,
        max_length=200,
        pattern=MODEL_REF_PATTERN,
        description="A model that gets a copy of every request; its answers are never returned.",
    )
    scale_to_zero_after_s: int | None = Field(
        default=None, ge=10, le=7 * 86400, description="Needs min_replicas 0."
    )
    target: Target = "local"
    auth: ServingAuth = Field(default="token", description=_AUTH_HELP)
    features: FeatureServing | None = Field(default=None, description=_FEATURES_HELP)

    def spec_fields(self) -> dict[str, Any]:
        """The deployment spec's fields, as given."""
        return self.model_dump(mode="json", exclude={"name"})


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
    auth: ServingAuth | None = Field(default=None, description=_AUTH_HELP)
    features: FeatureServing | None = Field(default=None, description=_FEATURES_HELP)

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
