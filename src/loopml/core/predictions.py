"""The prediction log, feedback and batch scoring as the rest of loopml sees them (no I/O).

Every prediction a deployment serves lands in its lake table ``prediction_table(name)``
(``churn_api__predictions``), one row per predicted row; labels sent back land in
``feedback_table(name)``. Both tables have fixed schemas (``PREDICTION_COLUMNS``,
``FEEDBACK_COLUMNS``), whatever the model: a deployment's model may change from a
classifier with integer classes to one with string classes, and its log must still take
the rows. So a prediction and a label are stored twice: as canonical text
(``prediction``/``label``: ``"1"``, ``"churn"``, ``"true"``, ``"3.25"``), which compares
equal across types (a label ``1`` or ``1.0`` against a prediction ``1``), and as a number
where they are one (``prediction_value``/``label_value``, for regression metrics).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from loopml.core.errors import ValidationError
from loopml.core.lake import ColumnInfo

INFERENCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""An inference id as the model server and the gateway give them (``X-Inference-Id``)."""
TABLE_REF_PATTERN = re.compile(r"^([a-z][a-z0-9_]{0,62})(@(0|[1-9][0-9]{0,8}))?$")
"""A lake table, at its latest version (``customers``) or a past one (``customers@3``)."""
MAX_FEEDBACK_ITEMS = 10_000
MAX_LABEL_CHARS = 1000
Role = Literal["primary", "canary", "shadow"]
ROLES: tuple[Role, ...] = ("primary", "canary", "shadow")

PREDICTION_COLUMNS = [
    ColumnInfo(name="inference_id", type="string"),
    ColumnInfo(name="row_index", type="int64"),
    ColumnInfo(name="deployment", type="string"),
    ColumnInfo(name="model", type="string"),
    ColumnInfo(name="model_version", type="int64"),
    ColumnInfo(name="role", type="string"),
    ColumnInfo(name="ts", type="timestamp[us]"),
    ColumnInfo(name="latency_ms", type="double"),
    ColumnInfo(name="protocol", type="string"),
    ColumnInfo(name="inputs", type="string"),
    ColumnInfo(name="prediction", type="string"),
    ColumnInfo(name="prediction_value", type="double"),
    ColumnInfo(name="probabilities", type="string"),
]
"""The prediction log's columns. ``row_index``: the row's place in its request (a request
of several rows shares one inference id). ``ts``: when the request arrived (UTC).
``inputs``: the row's features as a JSON object. ``probabilities``: a JSON object from
class label to probability (a JSON array in class order when the classes are unknown)."""

FEEDBACK_COLUMNS = [
    ColumnInfo(name="inference_id", type="string"),
    ColumnInfo(name="row_index", type="int64"),
    ColumnInfo(name="label", type="string"),
    ColumnInfo(name="label_value", type="double"),
    ColumnInfo(name="received_at", type="timestamp[us]"),
]
"""The feedback table's columns; ``received_at`` is when the server took the label (UTC)."""

Scalar = bool | int | float | str
_INT64 = 2**63


def canonical_text(value: Scalar) -> str:
    """A prediction or label as the text both tables store, so that equal values compare
    equal whatever JSON type carried them: ``true``, ``1`` (for ``1`` and ``1.0``),
    ``3.25``, or the string itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return value


def numeric_value(value: Scalar) -> float | None:
    """A prediction or label as a number (booleans as 0 and 1), ``None`` for text."""
    if isinstance(value, bool | int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def parse_table_ref(ref: str) -> tuple[str, int | None]:
    """``customers@3`` -> ``("customers", 3)``; ``customers`` -> ``("customers", None)``.

    Raises:
        ValidationError: not a table name, optionally followed by ``@`` and a version.
    """
    found = TABLE_REF_PATTERN.fullmatch(ref) if isinstance(ref, str) else None
    if found is None:
        raise ValidationError(
            f"invalid table reference {repr(ref)[:80]}: expected a table name, optionally "
            "with a version (for example 'customers' or 'customers@3')",
            details={"field": "input", "pattern": TABLE_REF_PATTERN.pattern},
        )
    version = found.group(3)
    return found.group(1), None if version is None else int(version)


# ---------------------------------------------------------------------- feedback

Label = Annotated[
    StrictBool
    | Annotated[StrictInt, Field(ge=-_INT64, le=_INT64 - 1)]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[StrictStr, Field(min_length=1, max_length=MAX_LABEL_CHARS)],
    Field(description="The true outcome: a string, a number or a boolean."),
]


class FeedbackItem(BaseModel):
    """One label for one served prediction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_id: str = Field(
        pattern=INFERENCE_ID_PATTERN.pattern,
        max_length=128,
        description="The inference id the prediction's answer carried (X-Inference-Id).",
    )
    label: Label
    row_index: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="The row of the request the label is for (0 for a single-row request).",
    )


class FeedbackBatch(BaseModel):
    """Several labels at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


class FeedbackResult(BaseModel):
    """Where posted labels landed."""

    model_config = ConfigDict(frozen=True)

    deployment: str = Field(description="The deployment the labels are for.")
    table: str = Field(description="The feedback table they landed in.")
    accepted: int = Field(description="Labels in this post.")
    version: int = Field(description="The table version that holds them.")
    replayed: bool = Field(
        default=False,
        description="True when a post with the same Idempotency-Key and labels had already "
        "landed: nothing was appended.",
    )


# ---------------------------------------------------------------------- batch scoring

BATCH_OUTPUT_COLUMNS = ("prediction", "probabilities", "inference_id", "model", "model_version")
"""The columns batch scoring adds to the input's (``probabilities`` for classifiers only)."""


class _BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(
        pattern=TABLE_REF_PATTERN.pattern,
        max_length=73,
        description="The table to score, at its latest version or a past one (`customers@3`).",
    )
    output: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        max_length=63,
        description="The table to write: the input's columns, `prediction`, `probabilities` "
        "(classifiers), `inference_id`, `model` and `model_version`.",
    )
    mode: Literal["append", "overwrite"] = "append"
    on: Literal["local", "ray"] = Field(
        default="local",
        description="Where the rows are scored: `local` (in the server's process) or `ray` "
        "(the table's files read and scored in parallel on the Ray cluster of "
        "`worker.executor`, else a Ray instance of the server's own; needs `loopml[ray]`).",
    )


class BatchByModel(_BatchRequest):
    """Score a table with a registered model version."""

    model: str = Field(
        pattern=r"^[a-z][a-z0-9_-]{0,62}(/[1-9][0-9]{0,8}|@[a-z][a-z0-9_-]{0,62})?$",
        max_length=200,
        description="The model: `churn` (newest READY version), `churn/3` or `churn@champion`.",
    )


class BatchByDeployment(_BatchRequest):
    """Score a table with what a deployment serves (its primary revision's version)."""

    deployment: str = Field(
        pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$",
        max_length=40,
        description="The deployment whose primary model version scores the rows.",
    )


class BatchResult(BaseModel):
    """What a batch scoring wrote."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(description="Rows scored and written.")
    output: str = Field(description="The table written.")
    output_version: int = Field(description="The output table's version holding them.")
    model: str = Field(description="The registered model that scored them.")
    version: int = Field(description="Its version.")
    classes: list[str | int | float | bool] | None = Field(
        default=None, description="A classifier's classes, in `probabilities` order."
    )
    ray_nodes: dict[str, int] = Field(
        default_factory=dict,
        description="Scored on Ray (`on: ray`): the rows each Ray node scored, by the node's "
        "address; empty when the server scored them.",
    )
    ray_actors: int = Field(
        default=0,
        description="Scored on Ray: how many scoring actors did it, one per CPU of the "
        "cluster free when the call began (each loads the model once); 0 when the server "
        "scored them.",
    )
