"""Domain types of the model registry: models, versions, lineage and the GC report.

A version's status moves once: PENDING (just registered, artifacts being verified) to READY
(every file of the package present, with the size and SHA-256 its manifest records) or
FAILED (``status_message`` names what was missing or wrong). A version registered from an
MLflow-format model starts PACKAGING instead (the server's sandboxed converter is making its
package, ``registry.mlflow_packaging``) and then settles the same way. Nothing but READY is
served or aliased.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError
from loopml.core.refs import ModelRef

TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,249}$")
MAX_TAG_VALUE = 5000
MAX_TAGS = 100
MAX_DESCRIPTION = 4000


class VersionStatus(StrEnum):
    """Where a version's registration stands."""

    PENDING = "PENDING"
    PACKAGING = "PACKAGING"
    READY = "READY"
    FAILED = "FAILED"


def validate_tag(key: str, value: str | None = None) -> str:
    """Return ``key`` if it (and ``value``, when given) is a valid tag, else raise.

    A key is 1 to 250 letters, digits, ``_``, ``.`` or ``-`` not starting with ``.`` or ``-``
    (it travels as a URL path segment); a value is at most ``MAX_TAG_VALUE`` characters.
    """
    if not isinstance(key, str) or not TAG_KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            f"invalid tag key {repr(key)[:80]}: expected 1 to 250 letters, digits, '_', '.' "
            "or '-', starting with a letter, digit or '_' (for example 'team')",
            details={"field": "key", "pattern": TAG_KEY_PATTERN.pattern},
        )
    if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE):
        raise ValidationError(
            f"invalid value of tag {key!r}: expected a string of at most {MAX_TAG_VALUE} "
            "characters",
            details={"field": "value", "max_length": MAX_TAG_VALUE},
        )
    return key


class RegisteredModel(BaseModel):
    """A named model of a project and a summary of its versions."""

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    name: str
    description: str
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, int] = Field(
        default_factory=dict, description="Alias name to the version number it points at."
    )
    latest_version: int | None = Field(
        default=None, description="The highest version number, whatever its status."
    )
    created_at: datetime
    updated_at: datetime


class ModelVersion(BaseModel):
    """One numbered version of a registered model, built from a model a run logged."""

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    model: str = Field(description="The registered model's name.")
    version: int
    run_id: str
    logged_model_id: str
    manifest_sha256: str = Field(description="SHA-256 of the package manifest, the trust anchor.")
    status: VersionStatus
    status_message: str
    description: str
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    actor: str
    created_at: datetime
    updated_at: datetime

    @property
    def ref(self) -> ModelRef:
        """The reference that names exactly this version (``proj:churn/3``)."""
        return ModelRef(name=self.model, project=self.project, version=self.version)


class LineageInput(BaseModel):
    """Something a run consumed (``kind='dataset'``, ``ref`` a snapshot id), and, where a
    later stage knows it, what that input was built from (``upstream``)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    ref: str
    details: dict[str, Any] = Field(default_factory=dict)
    upstream: list[LineageInput] = Field(
        default_factory=list,
        description="What the input came from (table versions behind a dataset snapshot); "
        "empty until the data layer registers an expander for its kind.",
    )


class RunSummary(BaseModel):
    """The run a version was built from, as lineage shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    status: str
    experiment_id: str
    start_time: datetime
    end_time: datetime | None = None


class VersionLineage(BaseModel):
    """Upstream lineage of a version: version -> run -> the run's inputs -> their sources."""

    model_config = ConfigDict(frozen=True)

    version: ModelVersion
    run: RunSummary
    inputs: list[LineageInput]


class InputLineage(BaseModel):
    """Downstream lineage of an input: the runs that consumed it and the versions they built."""

    model_config = ConfigDict(frozen=True)

    input_kind: str
    input_ref: str
    runs: list[RunSummary]
    versions: list[ModelVersion]


class GcReport(BaseModel):
    """What a garbage collection freed (or, with ``dry_run``, would free)."""

    model_config = ConfigDict(frozen=True)

    dry_run: bool
    objects: int = Field(description="Objects deleted (or that would be).")
    bytes: int = Field(description="Bytes freed (or that would be).")
    prefixes: list[str] = Field(
        default_factory=list,
        description="The orphaned folders, at most 1000 listed ('projects/<id>/' or "
        "'projects/<id>/runs/<run_id>/').",
    )
    temporary_removed: int = Field(
        default=0, description="Temporary files of interrupted writes removed (0 on dry runs)."
    )
