"""Feature views as the rest of loopml sees them: a spec, its versions, online settings.

A feature view names columns of a lake table (or of one SQL query over lake tables) as
features of an entity: ``entities`` are the key columns, ``event_time`` says when each
row's values became true, ``ttl`` how long they stay usable. Each apply that changes the
spec is a new version; point-in-time training sets and the online store read a version.
No I/O here.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.lake import TABLE_NAME_PATTERN

VIEW_NAME_PATTERN = TABLE_NAME_PATTERN
"""A view's name is used as a table name in SQL and in online-store keys."""
COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TTL_PATTERN = re.compile(r"^([1-9][0-9]{0,8})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SPEC_CHARS = 100_000
MAX_FEATURES = 1000
MAX_ENTITIES = 8
RESERVED_VIEW_NAMES = frozenset({"views", "training_sets"})
"""Names that are route segments under ``.../features/``."""


def validate_view_name(name: str) -> str:
    """Return ``name`` if it is a valid feature view name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not VIEW_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid feature view name {str(name)[:80]!r}: expected a lowercase letter "
            "followed by up to 62 lowercase letters, digits or '_' (for example "
            "'user_stats')",
            details={"field": "name", "pattern": VIEW_NAME_PATTERN.pattern},
        )
    if name in RESERVED_VIEW_NAMES:
        raise ValidationError(
            f"{name!r} is reserved; choose another feature view name",
            details={"field": "name"},
        )
    return name


def parse_ttl(value: object) -> int:
    """Seconds in a TTL: an integer of seconds, or ``30s``, ``15m``, ``12h``, ``7d``, ``2w``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**10:
        return value
    found = TTL_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValidationError(
            f"invalid ttl {str(value)[:40]!r}: expected seconds (86400) or a number with a "
            "unit s, m, h, d or w (7d)",
            details={"field": "ttl"},
        )
    return int(found.group(1)) * _UNIT_S[found.group(2)]


def _column(value: str, field: str) -> str:
    if not isinstance(value, str) or not COLUMN_PATTERN.fullmatch(value):
        raise ValidationError(
            f"invalid column {str(value)[:80]!r} in {field}: expected a letter or '_' then "
            "up to 127 letters, digits or '_'",
            details={"field": field, "pattern": COLUMN_PATTERN.pattern},
        )
    return value


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = Field(default="", max_length=2000)
    entities: list[str] = Field(min_length=1, max_length=MAX_ENTITIES)
    event_time: str
    ttl: int | str
    source: str = Field(min_length=1, max_length=MAX_SPEC_CHARS)
    features: list[str] = Field(min_length=1, max_length=MAX_FEATURES)


class FeatureViewSpec(BaseModel):
    """A view's definition, checked and normalized (``ttl_s`` in seconds).

    Attributes:
        source: a lake table (``orders``, not pinned) or one SELECT over lake tables.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    entities: list[str]
    event_time: str
    ttl_s: int
    source: str
    features: list[str]

    @classmethod
    def from_document(cls, data: Any) -> FeatureViewSpec:
        """The spec in a parsed YAML document.

        Raises:
            ValidationError: a missing or unknown field, a bad name, column or TTL, or a
                column named twice.
        """
        if not isinstance(data, dict):
            raise ValidationError("a feature view spec is a mapping: name, entities, ...")
        try:
            raw = _SpecModel.model_validate(data)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            raise ValidationError(
                f"feature view spec: {where}: {first['msg']}",
                details={"field": where},
            ) from None
        validate_view_name(raw.name)
        columns = [_column(c, "entities") for c in raw.entities]
        columns.append(_column(raw.event_time, "event_time"))
        columns += [_column(c, "features") for c in raw.features]
        doubled = sorted({c for c in columns if columns.count(c) > 1})
        if doubled:
            raise ValidationError(
                f"feature view spec names columns more than once: {doubled}",
                details={"field": "features", "columns": doubled},
            )
        return cls(
            name=raw.name,
            description=raw.description,
            entities=raw.entities,
            event_time=raw.event_time,
            ttl_s=parse_ttl(raw.ttl),
            source=raw.source.strip(),
            features=raw.features,
        )


class FeatureView(BaseModel):
    """One version of a view (the newest unless asked otherwise)."""

    project: str
    name: str
    version: int
    latest_version: int
    spec: FeatureViewSpec
    spec_hash: str
    spec_text: str
    actor: str
    created_at: datetime
    materialized: MaterializedState | None = None


class MaterializedState(BaseModel):
    """What the online store holds of a view: which version, up to which event time."""

    version: int
    watermark: datetime | None
    rows: int
    at: datetime


class FeatureViewApplied(BaseModel):
    """The answer to an apply: ``created`` is false when the spec was unchanged."""

    view: FeatureView
    created: bool


class MaterializeResult(BaseModel):
    """One materialization: rows read from the source and entities written."""

    view: str
    version: int
    full: bool
    rows_read: int
    entities_written: int
    watermark: datetime | None


OnlineStatus = Literal["found", "missing", "expired"]


class OnlineFeatures(BaseModel):
    """Online values of one entity.

    Attributes:
        status: ``found``; ``missing`` when the store has nothing for the entity;
            ``expired`` when its newest values are older than the view's TTL (then
            ``event_time`` says how old, and ``values`` is ``None`` as for a missing one).
    """

    entity: dict[str, Any]
    event_time: datetime | None
    values: dict[str, Any] | None
    status: OnlineStatus = "found"


# ----------------------------------------------------------------- online store settings


class SqliteOnlineStoreConfig(BaseModel):
    """The embedded online store: one SQLite file."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["sqlite"] = "sqlite"
    path: Path | None = Field(
        default=None, description="The SQLite file (default: online.db under the home)."
    )


class RedisOnlineStoreConfig(BaseModel):
    """The online store at scale: a Redis server."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["redis"]
    url: str = Field(default="redis://127.0.0.1:6379/0", description="The Redis server.")
    key_prefix: str = Field(
        default="loopml:features",
        max_length=100,
        description="Prefix of every key the store writes.",
    )


OnlineStoreConfig = Annotated[
    SqliteOnlineStoreConfig | RedisOnlineStoreConfig, Field(discriminator="type")
]

FeatureView.model_rebuild()


# ----------------------------------------------------------------- training/serving skew


class SkewExample(BaseModel):
    """One logged row whose served value differs from the lake's as of its time."""

    inference_id: str
    entity: dict[str, Any]
    served_at: datetime
    served: Any
    offline: Any


class FeatureSkew(BaseModel):
    """One feature: of ``compared`` logged rows, ``differ`` got another value than the
    point-in-time join from the lake gives for the same entity and time."""

    feature: str
    compared: int
    differ: int
    share: float
    examples: list[SkewExample]


class SkewReport(BaseModel):
    """What ``loopml features skew`` found.

    Attributes:
        rows_logged: logged rows read (the newest ``sample``, shadows left out).
        rows_compared: those that carry the view's entity keys and a value of one of its
            features.
    """

    view: str
    version: int
    deployment: str
    rows_logged: int
    rows_compared: int
    tolerance: float
    features: list[FeatureSkew]


def view_not_found(project: str, name: str) -> NotFoundError:
    """The error for a feature view the project does not have, with the command that adds one."""
    return NotFoundError(
        f"feature view {name!r} not found in project {project!r}: apply its spec first "
        "with `loopml features apply FILE`",
        details={"project": project, "view": name},
    )
