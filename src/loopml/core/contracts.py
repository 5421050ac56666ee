"""Validation contracts of lake tables, and the reports their checks leave.

A contract is what every append to a table must satisfy: per-column rules (type, not-null,
min/max, allowed values, regex, unique), bounds on the table's row count and freshness of a
time column. ``on_fail`` says what a failing batch does: ``reject`` refuses it whole,
``quarantine`` lands the good rows and moves the bad ones to ``<table>__rejected``.

These types hold no I/O; ``loopml.data.contracts`` runs the checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import ValidationError
from loopml.core.lake import COLUMN_TYPE_PATTERN, validate_table_name
from loopml.core.numbers import integral
from loopml.core.yamltext import load_yaml

MAX_REGEX = 500
MAX_ALLOWED = 1000
MAX_RULE_COLUMNS = 1000
MAX_SAMPLES = 5
REJECTED_SUFFIX = "__rejected"
REASON_COLUMN = "_loopml_reason"

OnFail = Literal["reject", "quarantine"]
Bound = StrictInt | StrictFloat | StrictStr
"""A min or max: a number, or text for text, date and time columns (ISO 8601)."""
ColumnName = Annotated[str, Field(min_length=1, max_length=255)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Rule):
    """The rules of one column; each one left out is not checked.

    Attributes:
        type: the Arrow type the column must have or safely cast to (``int64``, ``string``).
        not_null: no nulls.
        min: the smallest value allowed (inclusive).
        max: the largest value allowed (inclusive).
        allowed: the only values allowed (nulls are left to ``not_null``).
        regex: an RE2 pattern each value must contain (anchor with ``^...$`` for a full
            match); RE2 runs in linear time, so no pattern can hang the server.
        unique: no value twice, within the batch or against the table's current rows.
    """

    type: str | None = Field(
        default=None, max_length=64, json_schema_extra={"pattern": COLUMN_TYPE_PATTERN}
    )
    not_null: StrictBool = False
    min: Bound | None = Field(default=None, union_mode="left_to_right")
    max: Bound | None = Field(default=None, union_mode="left_to_right")
    allowed: list[Bound] | None = Field(default=None, min_length=1, max_length=MAX_ALLOWED)
    regex: str | None = Field(default=None, min_length=1, max_length=MAX_REGEX)
    unique: StrictBool = False


class RowBounds(_Rule):
    """Bounds on the table's row count once the batch is appended (inclusive)."""

    min: StrictInt | None = Field(default=None, ge=0)
    max: StrictInt | None = Field(default=None, ge=0)

    # A whole float (29948146.0) is an integer to JSON Schema; take it as one. Done here,
    # not with an annotated type, so the published schema keeps its `minimum`.
    _whole = field_validator("min", "max", mode="before")(integral)


class Freshness(_Rule):
    """The newest value of ``column`` (a timestamp) must be at most ``max_age_s`` old."""

    column: ColumnName
    max_age_s: StrictFloat = Field(gt=0, le=10 * 365 * 86400)


class Contract(_Rule):
    """A table's validation contract (JSON, or YAML read with a safe loader by the CLI)."""

    columns: dict[ColumnName, ColumnRule] = Field(default_factory=dict, max_length=MAX_RULE_COLUMNS)
    rows: RowBounds | None = None
    freshness: Freshness | None = None
    on_fail: OnFail = "reject"


def parse_contract(data: Any) -> Contract:
    """A ``Contract`` from parsed JSON or YAML, or a ``ValidationError`` naming each problem."""
    try:
        return Contract.model_validate(data)
    except PydanticValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'contract'}: {e['msg']}"
            for e in exc.errors()[:10]
        ]
        raise ValidationError(
            "invalid validation contract: " + "; ".join(problems),
            details={"problems": problems},
        ) from None


def load_contract(text: str) -> Contract:
    """A ``Contract`` from YAML or JSON text, read with YAML's safe loader.

    The safe loader builds plain data only: a tag such as ``!!python/object/apply`` is an
    error, never a call (RELIABILITY 9).

    Raises:
        ValidationError: text that is not YAML/JSON, or not a valid contract.
    """
    return parse_contract(load_yaml(text, "contract"))


def rejected_table(table: str) -> str:
    """The table that receives ``table``'s quarantined rows.

    Raises:
        ValidationError: ``<table>__rejected`` would be over the 63-character name limit.
    """
    name = table + REJECTED_SUFFIX
    if len(name) > 63:
        raise ValidationError(
            f"a quarantine contract needs the table {name!r}, which is over the 63-character "
            f"name limit: use on_fail 'reject', or a table name of at most "
            f"{63 - len(REJECTED_SUFFIX)} characters",
            details={"table": table, "field": "on_fail"},
        )
    return validate_table_name(name)


class RuleFailure(BaseModel):
    """One rule that some rows (or the whole batch) failed.

    Attributes:
        column: the column, or ``None`` for a rule of the whole batch (``rows``).
        rule: ``type``, ``not_null``, ``min``, ``max``, ``allowed``, ``regex``, ``unique``,
            ``missing``, ``rows`` or ``freshness``.
        message: what was expected and what came.
        count: rows that failed it (every row for a rule of the whole batch).
        sample_rows: up to five of those rows' indexes in the batch.
        sample_values: their values.
    """

    column: str | None = None
    rule: str
    message: str
    count: int
    sample_rows: list[int] = Field(default_factory=list)
    sample_values: list[Any] = Field(default_factory=list)


class ValidationReport(BaseModel):
    """The outcome of checking one batch against its table's contract.

    Attributes:
        id: the report's id.
        table: the table checked.
        version: the table version the good rows made, ``None`` when nothing was written.
        rejected_version: the ``<table>__rejected`` version the bad rows made (quarantine).
        on_fail: the contract's ``on_fail``.
        rows_checked: rows in the batch.
        rows_failed: rows that failed at least one rule.
        passed: no rule failed.
        failures: each failed rule.
        created_at: when the batch was checked, UTC.
    """

    id: str
    table: str
    version: int | None = None
    rejected_version: int | None = None
    on_fail: OnFail
    rows_checked: int
    rows_failed: int
    passed: bool
    failures: list[RuleFailure]
    created_at: datetime
