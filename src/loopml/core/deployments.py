"""Deployments as the rest of loopml sees them: what a user asks for, and what runs.

A **deployment** serves a model under a stable name. Its **spec** says which model (a version,
``churn/3``, or an alias, ``churn@champion``, which the deployment follows when it moves),
how many replicas, the resources of each, an optional **canary** (a second model taking a
share of traffic) and **shadow** (a model that gets a copy of traffic, whose answers are
logged and never returned), scale-to-zero, and the target that runs it (``local``
processes supervised by the platform, or ``kubernetes``).

Each change of what is served makes a new **revision** (a resolved model version); the
deployment's **traffic** maps revisions to percentages. Rollback points traffic back at an
earlier revision.

Names are DNS labels (lowercase letters, digits, ``-``), valid as Kubernetes object names;
a deployment's lake tables are named after it with ``-`` replaced by ``_``
(``prediction_table``), which is one-to-one because names have no ``_``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import ValidationError, invalid_request
from loopml.core.features import VIEW_NAME_PATTERN
from loopml.core.refs import ModelRef

DEPLOYMENT_NAME_PATTERN = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
CPU_PATTERN = r"^([1-9][0-9]{0,3}m|[0-9]{1,3}(\.[0-9]{1,3})?)$"
MEMORY_PATTERN = r"^[1-9][0-9]{0,5}(Ki|Mi|Gi)$"
MAX_REPLICAS = 64
MODEL_REF_PATTERN = r"^[a-z][a-z0-9_-]{0,62}(/[1-9][0-9]{0,8}|@[a-z][a-z0-9_-]{0,62})?$"
"""A model reference in the deployment's project (see ``core.refs.ModelRef``): ``churn``
(the newest READY version), ``churn/3``, ``churn@champion``."""

Target = Literal["local", "kubernetes"]
ServingAuth = Literal["none", "token"]
"""Who may call a deployment's prediction paths when the server has authentication on:
``token`` (a bearer token with the viewer role in its project, or narrowed to it) or ``none``
(anyone who can reach the gateway). With authentication off every deployment is open."""


def validate_deployment_name(name: str) -> str:
    """Return ``name`` if it is a valid deployment name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not DEPLOYMENT_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid deployment name {repr(name)[:80]}: expected 1 to 40 lowercase letters, "
            "digits or '-', starting with a letter and not ending with '-' (for example "
            "'churn-api')",
            details={"field": "name", "pattern": DEPLOYMENT_NAME_PATTERN.pattern},
        )
    return name


def table_stem(name: str) -> str:
    """The deployment's name as a lake table name stem (``churn-api`` -> ``churn_api``)."""
    return validate_deployment_name(name).replace("-", "_")


def prediction_table(name: str) -> str:
    """The lake table every prediction of deployment ``name`` is appended to."""
    return f"{table_stem(name)}__predictions"


def feedback_table(name: str) -> str:
    """The lake table the labels sent back for deployment ``name`` go to."""
    return f"{table_stem(name)}__feedback"


def labelled_table(name: str) -> str:
    """The lake table of deployment ``name``'s answers joined with their labels."""
    return f"{table_stem(name)}__labelled"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(_Spec):
    """What each replica asks for (Kubernetes quantities; the local target records them)."""

    cpu: str = Field(default="500m", pattern=CPU_PATTERN, description="Such as 500m or 2.")
    memory: str = Field(default="512Mi", pattern=MEMORY_PATTERN, description="Such as 512Mi.")


class Canary(_Spec):
    """A second model taking ``percent`` of the traffic; with ``auto``, judged against the
    primary from the monitor's figures and rolled back or promoted by itself (see
    ``core.canary``). Every judging field left out takes the server's ``canary`` setting."""

    model: str = Field(pattern=MODEL_REF_PATTERN, max_length=200)
    percent: int = Field(ge=1, le=99)
    auto: bool | None = Field(
        default=None, description="Roll back or promote automatically (`canary.auto` if unset)."
    )
    max_error_rate_increase: float | None = Field(
        default=None, ge=0, le=1, description="Error-rate margin over the primary's (a share)."
    )
    max_latency_ratio: float | None = Field(
        default=None, ge=1, le=1000, description="p95 latency margin: times the primary's."
    )
    latency_slack_ms: float | None = Field(
        default=None, ge=0, le=600_000, description="Latency differences under this never count."
    )
    max_quality_drop: float | None = Field(
        default=None, ge=0, le=1, description="Accuracy (or R2) margin under the primary's."
    )
    min_requests: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Requests each revision needs first."
    )
    min_labels: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Labels each needs to compare quality."
    )
    promote_after_s: float | None = Field(
        default=None, ge=0, le=30 * 86_400, description="Promoted when no worse after this."
    )


MissingFeatures = Literal["reject", "default"]
"""What a feature-serving deployment does with an entity the online store has no fresh
values for: ``reject`` it (422 naming the entity) or fill ``defaults`` (null otherwise)."""
MAX_SERVED_VIEWS = 10


class FeatureServing(_Spec):
    """The feature views a deployment reads by entity key before each prediction.

    Attributes:
        views: the views (newest versions) whose online values are added to each instance;
            an instance names each view's entity keys, and may carry some features itself
            (request-time values win over stored ones).
        missing: ``reject`` (422) or ``default`` for an entity with no value, or one older
            than its view's TTL.
        defaults: feature values used under ``missing: default`` (unlisted ones are null;
            ignored under ``reject``).
    """

    views: list[Annotated[str, Field(pattern=VIEW_NAME_PATTERN.pattern, max_length=63)]] = Field(
        min_length=1, max_length=MAX_SERVED_VIEWS, json_schema_extra={"uniqueItems": True}
    )
    missing: MissingFeatures = "reject"
    defaults: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict, max_length=1000
    )

    @model_validator(mode="after")
    def _check(self) -> FeatureServing:
        if len(set(self.views)) != len(self.views):
            raise ValueError(f"feature views named twice: {self.views}")
        return self


DEPLOYMENT_NAME_HELP = (
    "1 to 40 lowercase letters, digits or '-', starting with a letter ('churn-api')."
)
SERVING_AUTH_HELP = (
    "With authentication on: 'token' (prediction paths ask for a bearer token) or 'none' "
    "(anyone who reaches the gateway may predict). With authentication off, all are open."
)
FEATURE_SERVING_HELP = (
    "Feature views whose online values the gateway adds to each /predict instance, by the "
    "views' entity keys: {views: [...], missing: reject|default, defaults: {...}}."
)


class DeploymentOptions(_Spec):
    """A deployment's options, each with its default and bounds, defined once for the spec,
    the API's request bodies, the client and ``loopml deploy``. Rules across fields are the
    spec's (``DeploymentSpec``), checked after the model references are looked up, so an
    unknown model is 404 whatever else is wrong."""

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
    auth: ServingAuth = Field(default="token", description=SERVING_AUTH_HELP)
    features: FeatureServing | None = Field(default=None, description=FEATURE_SERVING_HELP)


class DeploymentRequest(DeploymentOptions):
    """A deployment to create: its name and options (the body of ``POST
    .../deployments``). The name is checked by the control plane
    (``validate_deployment_name``), whose message says how to fix it."""

    name: str = Field(
        max_length=40,
        description=DEPLOYMENT_NAME_HELP,
        json_schema_extra={"pattern": DEPLOYMENT_NAME_PATTERN.pattern},
    )

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> DeploymentRequest:
        """The request ``body`` describes, checked as the API checks it.

        Raises:
            ValidationError: what the API would answer 422 with for the same body.
        """
        try:
            return cls.model_validate(body)
        except PydanticValidationError as exc:
            raise invalid_request(exc.errors(), prefix=("body",)) from None

    def spec_fields(self) -> dict[str, Any]:
        """The deployment spec's fields, as given."""
        return self.model_dump(mode="json", exclude={"name"})


class DeploymentSpec(DeploymentOptions):
    """What a deployment should serve and how.

    Attributes:
        model: the model reference; an alias (``churn@champion``) is followed when it moves.
        min_replicas: replicas kept running; 0 allows scaling to zero.
        max_replicas: the most replicas (the Kubernetes autoscaler's bound).
        resources: each replica's CPU and memory.
        canary: a second model and its share of traffic.
        shadow: a model that gets a copy of every request; its answers are logged only.
        scale_to_zero_after_s: stop every replica after this many idle seconds (needs
            ``min_replicas`` 0); the next request waits for one to start.
        target: ``local`` (processes supervised by the platform) or ``kubernetes``.
        auth: ``token`` (the default) or ``none``: whether the prediction paths ask for a
            token when the server has authentication on (see ``ServingAuth``).
        features: feature views the gateway reads by entity key and adds to each request
            (see ``FeatureServing``); the ``local`` target only.
    """

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is more than max_replicas "
                f"({self.max_replicas})"
            )
        if self.scale_to_zero_after_s is not None and self.min_replicas != 0:
            raise ValueError("scale_to_zero_after_s needs min_replicas 0")
        if self.features is not None and self.target != "local":
            raise ValueError(
                "features are added by the platform's gateway, which fronts the local "
                "target only; use target: local"
            )
        for ref in (self.model, self.shadow, self.canary.model if self.canary else None):
            if ref is not None:
                ModelRef.parse(ref)
        return self


class DeploymentStatus(StrEnum):
    """Where a deployment stands."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    SCALED_TO_ZERO = "scaled_to_zero"


class Revision(BaseModel):
    """One resolved model version a deployment has served (or serves).

    Attributes:
        number: 1, 2, 3, ... per deployment.
        model: the registered model's name; ``version`` the resolved version.
        ref: the reference it was resolved from (``churn@champion``).
        role: ``primary``, ``canary`` or ``shadow`` when it was created.
    """

    model_config = ConfigDict(frozen=True)

    number: int
    model: str
    version: int
    ref: str
    role: Literal["primary", "canary", "shadow"]
    created_at: datetime


class Deployment(BaseModel):
    """A deployment as the control plane records it.

    Attributes:
        traffic: revision number -> percent of requests (sums to 100).
        shadow_revision: the revision that gets a copy of traffic, if any.
        canary_revision: the revision of the live canary, if any.
        replicas_ready: replicas answering now (all revisions).
        status_message: why it is failed or pending.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    name: str
    spec: DeploymentSpec
    status: DeploymentStatus
    status_message: str = ""
    traffic: dict[int, int] = Field(default_factory=dict)
    shadow_revision: int | None = None
    canary_revision: int | None = None
    revisions: list[Revision] = Field(default_factory=list)
    replicas_ready: int = 0
    created_at: datetime
    updated_at: datetime

    def role_now(self, revision: Revision) -> str:
        """What ``revision`` is now, which its ``role`` (what it was created as) is not
        once a canary is promoted: ``shadow``, ``canary``, ``primary`` (the rest of the
        traffic) or ``retired`` (no traffic, no copy: what a rollback may return to)."""
        if revision.number == self.shadow_revision:
            return "shadow"
        if revision.number == self.canary_revision:
            return "canary"
        return "primary" if self.traffic.get(revision.number) else "retired"

    def live_revisions(self) -> set[int]:
        """The revisions live now: those taking a share of the traffic, and the shadow's
        copy. Each runs its own replicas; the others are retired."""
        live = {number for number, share in self.traffic.items() if share}
        if self.shadow_revision is not None:
            live.add(self.shadow_revision)
        return live

    def serving(self) -> Revision | None:
        """The revision taking the most traffic now (the primary; the newest on a tie):
        the version "this deployment" means on every face that shows its figures.
        ``None`` when no revision takes traffic."""
        live = [r for r in self.revisions if self.traffic.get(r.number)]
        if not live:
            return None
        return max(live, key=lambda r: (self.traffic[r.number], r.number))
