"""Dataset snapshots as the rest of loopml sees them: names, references, versions, profiles
and frozen train/eval splits. No I/O here (see ``loopml.data.datasets``).

A dataset version is an immutable snapshot of a source (a lake table version, or one SQL
query over pinned table versions): its rows in a canonical order, their content hash, a
profile of every column (the drift reference) and, once frozen, a train/eval split whose
eval part has its own hash (what the promotion gate compares models on).

References (``DatasetRef``)::

    churn_train          the newest version of dataset "churn_train"
    churn_train@latest   the same, spelled out
    churn_train@3        version 3
"""

from __future__ import annotations

import re
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
)

from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.lake import ColumnInfo
from loopml.core.numbers import WholeInt

DATASET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_DATASET_VERSION = 999_999_999
DATASET_REF_PATTERN = re.compile(
    r"^(?P<name>[a-z][a-z0-9_]{0,62})(?:@(?P<version>[1-9][0-9]{0,8}|latest))?$"
)
"""``name``, ``name@3`` or ``name@latest``."""
VERSION_PATTERN = r"^([1-9][0-9]{0,8}|latest)$"
"""A version in a URL: a number from 1, or ``latest``."""
HASH_PATTERN = r"^[0-9a-f]{64}$"
MAX_DESCRIPTION = 4000

Part = Literal["all", "train", "eval"]
PARTS: tuple[Part, ...] = ("all", "train", "eval")
QUANTILES: tuple[tuple[str, float], ...] = (
    ("p01", 0.01),
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
)
"""The quantiles a numeric column's profile records, by label."""
HISTOGRAM_BINS = 20
TOP_K = 20
MAX_CATEGORY_CHARS = 256


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name, else raise ``ValidationError``.

    The rule is the table-name rule: a lowercase letter, then up to 62 lowercase letters,
    digits or ``_``.
    """
    if not isinstance(name, str) or not DATASET_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid dataset name {repr(name)[:80]}: expected a lowercase letter followed by "
            "up to 62 lowercase letters, digits or '_' (for example 'churn_train')",
            details={"field": "name", "pattern": DATASET_NAME_PATTERN.pattern},
        )
    return name


def parse_version(text: str | int | None) -> int | None:
    """A version as given in a URL or reference: ``None`` for ``latest`` (or ``None``), else
    the number (1 to ``MAX_DATASET_VERSION``).

    Raises:
        ValidationError: anything else.
    """
    if text is None or text == "latest":
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    elif isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 9:
        number = int(text)
    else:
        number = 0
    if not 1 <= number <= MAX_DATASET_VERSION:
        raise ValidationError(
            f"invalid dataset version {str(text)[:40]!r}: expected 'latest' or a number from 1 "
            f"to {MAX_DATASET_VERSION}",
            details={"field": "version"},
        )
    return number


class DatasetRef(BaseModel):
    """A reference to a dataset version: ``name`` or ``name@latest`` (the newest), ``name@3``.

    Example:
        >>> ref = DatasetRef.parse("churn_train@3")
        >>> (ref.name, ref.version, str(ref))
        ('churn_train', 3, 'churn_train@3')
    """

    model_config = ConfigDict(frozen=True)

    name: str
    version: int | None = None

    def model_post_init(self, __context: Any) -> None:
        """Validate, so a ``DatasetRef`` built by hand is as safe as a parsed one."""
        validate_dataset_name(self.name)
        if self.version is not None:
            parse_version(self.version)

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """Parse ``name``, ``name@latest`` or ``name@VERSION``.

        Raises:
            ValidationError: the text does not follow the grammar; the message shows it.
        """
        found = DATASET_REF_PATTERN.fullmatch(text) if isinstance(text, str) else None
        if found is None:
            raise ValidationError(
                f"invalid dataset reference {repr(text)[:80]}: expected 'name', "
                "'name@latest' or 'name@VERSION', for example 'churn_train@3'",
                details={"field": "ref"},
            )
        return cls(name=found["name"], version=parse_version(found["version"]))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


class SourceTable(BaseModel):
    """A lake table version a snapshot read (vacuum keeps its files)."""

    model_config = ConfigDict(frozen=True)

    table: str
    version: int


# ----------------------------------------------------------------------------- profile

Scalar = Annotated[StrictBool | StrictInt | StrictFloat | StrictStr, Field(union_mode="smart")]


class Histogram(BaseModel):
    """Counts of finite values in equal-width bins: ``len(edges) == len(counts) + 1``.

    The last bin includes its right edge (NumPy's ``histogram``). Drift tests bin live data
    with the same edges, counting values below the first edge in the first bin and values
    above the last in the last.
    """

    model_config = ConfigDict(frozen=True)

    edges: list[float]
    counts: list[int]


class TopValue(BaseModel):
    """One frequent value of a column and how many rows hold it."""

    model_config = ConfigDict(frozen=True)

    value: Scalar
    count: int


class ColumnProfile(BaseModel):
    """The statistics of one column: the reference that drift detection compares with.

    Attributes:
        name: the column.
        type: its Arrow type.
        kind: ``numeric`` (integers, floats, decimals, durations), ``categorical`` (text,
            booleans), ``temporal`` (dates, times, timestamps) or ``other`` (binary, null).
        count: non-null values.
        nulls: null values; ``null_share`` is ``nulls / rows`` (0 for no rows).
        nan, pos_inf, neg_inf: NaN and infinite values (floats); they are not in the
            statistics below, which are over finite values only.
        min, max: smallest and largest value (numbers; ISO 8601 text for temporal columns).
        mean, std: mean and population standard deviation (ddof 0) of the finite values.
        quantiles: ``p01`` ... ``p99`` (``QUANTILES``), linear interpolation.
        histogram: ``HISTOGRAM_BINS`` equal-width bins over ``[min, max]``.
        distinct: distinct non-null values (categorical and integer columns).
        top: the ``TOP_K`` most frequent values, most frequent first, ties by value (for
            integer columns only when they have at most ``TOP_K`` distinct values).
        other: non-null rows outside ``top``.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    kind: Literal["numeric", "categorical", "temporal", "other"]
    count: int
    nulls: int
    null_share: float
    nan: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    min: Scalar | None = None
    max: Scalar | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = None
    histogram: Histogram | None = None
    distinct: int | None = None
    top: list[TopValue] | None = None
    other: int | None = None


class DatasetProfile(BaseModel):
    """Every column's profile, in column order."""

    model_config = ConfigDict(frozen=True)

    rows: int
    columns: list[ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; ``KeyError`` when there is none."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


# ----------------------------------------------------------------------------- split


class SplitSpec(BaseModel):
    """How a version is split into train and eval parts.

    Attributes:
        eval_fraction: the share of rows (of each class, when stratified) that goes to eval,
            strictly between 0 and 1.
        seed: picks which rows (0 to 2**32 - 1); the same seed over the same version gives
            the same parts.
        stratify: a column whose classes keep their share in both parts, or ``None``.
    """

    # Strict: a request's "seed": "1" or true is refused, not coerced.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    eval_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: WholeInt = Field(default=0, ge=0, le=2**32 - 1)
    stratify: str | None = Field(default=None, min_length=1, max_length=255)


class Stratum(BaseModel):
    """One class of a stratified split and its rows in each part."""

    model_config = ConfigDict(frozen=True)

    value: Scalar | None
    train: int
    eval: int


class DatasetSplit(BaseModel):
    """A frozen train/eval split of a dataset version.

    Attributes:
        spec: how it was made.
        train_rows, eval_rows: rows in each part.
        train_hash, eval_hash: each part's content hash (the same definition as the version's
            ``content_hash``); ``eval_hash`` identifies the frozen eval set.
        keys: the artifact-store keys of the parts' Parquet files (``train``, ``eval``).
        strata: for a stratified split, each class's rows per part (at most 100 classes are
            listed, largest first).
        classes: how many classes the stratify column has (0 when not stratified).
    """

    model_config = ConfigDict(frozen=True)

    spec: SplitSpec
    train_rows: int
    eval_rows: int
    train_hash: str
    eval_hash: str
    keys: dict[str, str]
    strata: list[Stratum] = Field(default_factory=list)
    classes: int = 0


# ----------------------------------------------------------------------------- versions


class DatasetVersionInfo(BaseModel):
    """A version as listings show it: everything but the profile and the query text."""

    model_config = ConfigDict(frozen=True)

    version: int
    row_count: int
    content_hash: str
    sources: list[SourceTable]
    eval_hash: str | None = None
    actor: str
    created_at: datetime


class DatasetVersion(BaseModel):
    """One immutable snapshot of a dataset.

    Attributes:
        id: the version's id (its files live under it).
        project, dataset: whose version this is.
        version: its number, from 1.
        source: the ``from`` text it was made from (``churn``, ``churn@3`` or SQL).
        query: the SQL when the source was a query, else ``None``.
        sources: each lake table version it read.
        row_count, columns: its rows and schema.
        content_hash: SHA-256 of the schema and the rows in canonical order (see
            ``loopml.data.datasets``); the same rows give the same hash, whatever their
            order in the source.
        profile: every column's statistics, the drift reference.
        data_key: the artifact-store key of its Parquet file.
        split: the frozen train/eval split, or ``None``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    dataset: str
    version: int
    source: str
    query: str | None
    sources: list[SourceTable]
    row_count: int
    columns: list[ColumnInfo]
    content_hash: str
    profile: DatasetProfile
    data_key: str
    split: DatasetSplit | None
    actor: str
    created_at: datetime

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.dataset}@{self.version}"

    def info(self) -> DatasetVersionInfo:
        """The version as listings show it."""
        return DatasetVersionInfo(
            version=self.version,
            row_count=self.row_count,
            content_hash=self.content_hash,
            sources=self.sources,
            eval_hash=self.split.eval_hash if self.split else None,
            actor=self.actor,
            created_at=self.created_at,
        )


class DatasetVersionResult(DatasetVersion):
    """A version as a create or split call answers it: ``created`` is false when the call
    found what it asked for already there (the same content and split as the latest
    version, or the same split spec) and made nothing new."""

    created: bool


class Dataset(BaseModel):
    """A named dataset of a project, with its newest version's summary (a dataset is created
    with its first version, so it always has one)."""

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    name: str
    description: str
    latest_version: int
    latest: DatasetVersionInfo | None
    created_at: datetime
    updated_at: datetime


class DatasetDetail(Dataset):
    """A dataset with its versions, newest first; ``next_cursor`` pages on through
    ``GET .../datasets/{name}/versions``."""

    versions: list[DatasetVersionInfo]
    next_cursor: str | None = None


def dataset_not_found(name: str) -> NotFoundError:
    """The error for a dataset the project does not have, with the command that creates it."""
    return NotFoundError(
        f"dataset {name!r} not found: create it with `loopml datasets create {name} --from TABLE`",
        details={"dataset": name},
    )


def version_not_found(name: str, version: int | None) -> NotFoundError:
    """The error for a version ``name`` does not have (``None``: it has none at all), with
    the command that lists its versions."""
    shown = "any version" if version is None else f"version {version}"
    return NotFoundError(
        f"dataset {name!r} has no {shown}: `loopml datasets show {name}` lists its versions",
        details={"dataset": name, "version": version},
    )


def split_conflict(name: str, version: int, frozen: DatasetSplit) -> ConflictError:
    """The refusal of another split for ``name@version``, whose split is ``frozen``."""
    spec = frozen.spec
    shown = f"eval_fraction {spec.eval_fraction}, seed {spec.seed}"
    shown += f", stratify {spec.stratify!r}" if spec.stratify else ""
    return ConflictError(
        f"{name}@{version} already has a frozen split ({shown}); a split never changes, so "
        f"that models stay comparable on the same eval set (eval_hash "
        f"{frozen.eval_hash[:12]}). Make a new version with the split you want: "
        f"`loopml datasets create {name} --from ... --split ...`",
        details={"dataset": name, "version": version, "split": spec.model_dump()},
    )
