"""The run search spec: filters on latest metrics, params and tags, an order and a page.

A spec is data, never code: no user-supplied regular expression or SQL fragment reaches the
database. ``RunFilter.parse("metrics.acc >= 0.9")`` and ``RunOrder.parse("metrics.acc desc")``
read the short text form the CLI takes.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import ValidationError
from loopml.core.runs import KEY_PATTERN, PARAM_VALUE_MAX, JsonInt, Run, RunStatus
from loopml.core.types import Page

FilterKind = Literal["metric", "param", "tag"]
Operator = Literal["=", "!=", "<", "<=", ">", ">="]
TextOperator = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE"]
OrderKind = Literal["metric", "param", "tag", "attribute"]
Attribute = Literal["start_time", "end_time", "name", "status"]
Include = Literal["params", "metrics", "tags"]
Lifecycle = Literal["active", "deleted", "all"]
Children = Literal["folded", "flat"]
"""Runs not soft-deleted, soft-deleted ones (MLflow's delete-run), or both."""
ATTRIBUTES: tuple[Attribute, ...] = ("start_time", "end_time", "name", "status")
INCLUDES: tuple[Include, ...] = ("params", "metrics", "tags")
MAX_FILTERS = 20
MAX_ORDER_KEYS = 3
CURSOR_PATTERN = r"^(?:[0-9]{1,9}|k[A-Za-z0-9_-]{4,1000})$"
"""A row offset (``page=N``'s jump), or a keyset cursor (``k...``: a page's ``next_cursor``)."""
MAX_OFFSET = 999_999_999
ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_TIME_MS = 253_402_300_799_998
"""The latest time a time filter takes: its millisecond still ends within the year 9999."""

_PREFIXES: dict[str, FilterKind] = {"metrics": "metric", "params": "param", "tags": "tag"}
_FILTER_TEXT = re.compile(
    r"^\s*(metrics|params|tags)\.([A-Za-z0-9_.\-/]{1,250})\s*(!=|<=|>=|=|<|>|(?i:i?like)(?=\s))"
    r"\s*(.{0,6000}?)\s*$"
)
_ORDER_TEXT = re.compile(
    r"^\s*(?:(metrics|params|tags|attributes)\.)?([A-Za-z0-9_.\-/]{1,250})\s*(asc|desc)?\s*$",
    re.IGNORECASE,
)


class _Spec(BaseModel):
    # Strict, as request bodies: the API accepts exactly what its schema documents.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class RunFilter(_Spec):
    """``<kind>.<key> <op> <value>``: a ``MetricFilter`` or a ``TextFilter``.

    ``RunFilter.parse("metrics.acc >= 0.9")`` reads the short text form.
    """

    key: str = Field(pattern=KEY_PATTERN, max_length=250)

    @classmethod
    def parse(cls, text: str) -> MetricFilter | TextFilter:
        """Read ``metrics.acc >= 0.9``, ``params.model = lgbm``, ``tags.team = 'risk'`` or
        ``params.model LIKE 'lgbm%'``.

        Raises:
            ValidationError: the text is not of that form.
        """
        match = _FILTER_TEXT.fullmatch(text) if len(text) <= 7000 else None
        if match is None:
            raise ValidationError(
                f"invalid filter {text[:80]!r}: expected '<metrics|params|tags>.<key> <op> "
                "<value>' with op one of = != < <= > >= (and LIKE, ILIKE for params and "
                "tags), such as 'metrics.acc >= 0.9'",
                details={"field": "filter"},
            )
        prefix, key, op, raw = match.groups()
        kind = _PREFIXES[prefix]
        op = op.upper()
        try:
            if kind == "metric" and op in ("LIKE", "ILIKE"):
                raise ValidationError(
                    f"invalid filter {text[:80]!r}: {op} compares params and tags as text; a "
                    "metric takes = != < <= > >= and a number",
                    details={"field": "filter"},
                )
            if kind == "metric":
                value = _number(raw)
                if isinstance(value, str) or not math.isfinite(value):
                    raise ValidationError(
                        f"invalid filter {text[:80]!r}: a metric is compared with a finite "
                        f"number, got {raw[:40]!r} (such as 'metrics.acc >= 0.9')",
                        details={"field": "filter"},
                    )
                return MetricFilter.model_validate(
                    {"kind": kind, "key": key, "op": op, "value": value}
                )
            return TextFilter.model_validate(
                {"kind": kind, "key": key, "op": op, "value": _unquote(raw)}
            )
        except ValueError as exc:
            raise ValidationError(f"invalid filter {text[:80]!r}: {exc}") from exc


class MetricFilter(RunFilter):
    """A latest metric compared with a number; NaN never matches."""

    kind: Literal["metric"]
    op: Operator
    value: float = Field(allow_inf_nan=False)


class TextFilter(RunFilter):
    """A param or tag compared as text (``<`` and ``>`` compare byte-wise); ``!=`` matches
    runs that have the key with another value. ``LIKE`` (case-sensitive) and ``ILIKE`` take
    SQL patterns, ``%`` for any characters and ``_`` for one, as MLflow's search does."""

    kind: Literal["param", "tag"]
    op: TextOperator
    value: str = Field(max_length=PARAM_VALUE_MAX)


class NameFilter(_Spec):
    """The run's name compared as text; ``LIKE`` (case-sensitive) and ``ILIKE`` take SQL
    patterns, ``%`` for any characters and ``_`` for one."""

    kind: Literal["name"]
    op: Literal["=", "!=", "LIKE", "ILIKE"]
    value: str = Field(max_length=PARAM_VALUE_MAX)


class TimeFilter(_Spec):
    """The run's start or end compared with a time in milliseconds since the epoch (MLflow's
    ``attributes.start_time > 1700000000000``); a run not ended has no end time, so no
    comparison of ``end_time`` matches it."""

    kind: Literal["time"]
    key: Literal["start_time", "end_time"]
    op: Operator
    value: JsonInt = Field(ge=0, le=MAX_TIME_MS)


AnyFilter = Annotated[
    MetricFilter | TextFilter | NameFilter | TimeFilter, Field(discriminator="kind")
]


class RunOrder(_Spec):
    """One sort key: a ``KeyOrder`` (a latest metric, a param or a tag) or an
    ``AttributeOrder``. Runs without the metric, param or tag come last in either direction.

    ``RunOrder.parse("metrics.acc desc")`` reads the short text form.
    """

    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> KeyOrder | AttributeOrder:
        """Read ``metrics.acc desc``, ``params.lr``, ``start_time desc``.

        Raises:
            ValidationError: the text is not of that form.
        """
        match = _ORDER_TEXT.fullmatch(text) if len(text) <= 300 else None
        if match is None:
            raise ValidationError(
                f"invalid order {text[:80]!r}: expected '[metrics.|params.|tags.]<key> "
                "[asc|desc]', such as 'metrics.acc desc' or 'start_time'",
                details={"field": "order_by"},
            )
        prefix, key, direction = match.groups()
        fields = {"key": key, "descending": (direction or "").lower() == "desc"}
        try:
            if prefix and prefix.lower() != "attributes":
                return KeyOrder.model_validate({**fields, "kind": _PREFIXES[prefix.lower()]})
            return AttributeOrder.model_validate({**fields, "kind": "attribute"})
        except ValueError as exc:
            raise ValidationError(
                f"invalid order {text[:80]!r}: attributes are {', '.join(ATTRIBUTES)}; "
                "prefix metrics., params. or tags. otherwise",
                details={"field": "order_by"},
            ) from exc


class KeyOrder(RunOrder):
    """Sort by a latest metric (NaN counts as missing), a param or a tag."""

    kind: FilterKind
    key: str = Field(pattern=KEY_PATTERN, max_length=250)


class AttributeOrder(RunOrder):
    """Sort by a column of the run itself."""

    kind: Literal["attribute"]
    key: Attribute


AnyOrder = Annotated[KeyOrder | AttributeOrder, Field(discriminator="kind")]


class RunSearch(_Spec):
    """Which runs of a project to return, in what order, a page at a time.

    Attributes:
        experiment: only runs of this experiment (by name).
        experiment_ids: only runs of these experiments (by id); empty for all.
        run_ids: only these runs; empty for all.
        lifecycle: active runs (the default), soft-deleted ones, or all.
        status: only runs in one of these statuses; empty for all.
        children: ``folded`` (the default) lists top-level runs only, each with how many
            child runs it has (an AutoML search's trials stay under it); ``flat`` lists
            every run. A search by ``run_ids`` or ``parent_run_id`` is always flat.
        parent_run_id: only the child runs of this run.
        filters: every filter must hold (AND).
        order_by: sort keys, then newest first; the default is newest first.
        include: what each run comes with: latest metrics, params, tags.
        limit: page size, 1 to 1000.
        cursor: ``next_cursor`` of the previous page (or a row offset, to jump).
    """

    experiment: str | None = Field(default=None, max_length=200)
    experiment_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=100
    )
    run_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=1000
    )
    lifecycle: Lifecycle = "active"
    status: list[RunStatus] = Field(default_factory=list, max_length=5)
    children: Children = "folded"
    parent_run_id: str | None = Field(default=None, pattern=ID_PATTERN)
    filters: list[AnyFilter] = Field(default_factory=list, max_length=MAX_FILTERS)
    order_by: list[AnyOrder] = Field(default_factory=list, max_length=MAX_ORDER_KEYS)
    include: list[Include] = Field(default_factory=lambda: list(INCLUDES), max_length=3)
    limit: JsonInt = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)


def folds(spec: RunSearch) -> bool:
    """Whether ``spec`` lists top-level runs only, each with its count of child runs."""
    return spec.children == "folded" and not spec.run_ids and spec.parent_run_id is None


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def _number(raw: str) -> float | str:
    try:
        return float(raw)
    except ValueError:
        return raw  # refused with the schema's message


class RunPage(Page[Run]):
    """A page of a run search.

    Attributes:
        prev_cursor: the page before this one (``None`` on the first page).
        offset: the position of the first run, counted from 0 (for "runs 51 to 100"; a
            keyset cursor carries it along, the query never reads it).
    """

    prev_cursor: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class Keyset:
    """Where a keyset page starts: just after (or, ``before``, just before) the run whose
    sort values are ``values``: one per order key, then the start time (ISO text) and the
    id. ``offset`` is the page's position, shown, never used to read."""

    values: tuple[Any, ...]
    before: bool
    offset: int


def keyset_order(spec: RunSearch) -> bool:
    """Whether ``spec`` pages by keyset: every sort key is a metric or an attribute (their
    values are short; a param's or tag's could be 6,000 characters), so its cursors are
    keysets; otherwise row offsets."""
    return all(o.kind in ("metric", "attribute") for o in spec.order_by)


def keyset_cursor(keyset: Keyset) -> str:
    """The cursor text of ``keyset``."""
    body = {"v": list(keyset.values), "b": keyset.before, "o": keyset.offset}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return "k" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str | None) -> int | Keyset:
    """A cursor as a row offset (``None`` is the first page) or a ``Keyset``.

    Raises:
        ValidationError: neither.
    """
    if cursor is None:
        return 0
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 9:
        return int(cursor)
    try:
        if not re.fullmatch(CURSOR_PATTERN, cursor) or cursor[0] != "k":
            raise ValueError(cursor)
        text = cursor[1:] + "=" * (-(len(cursor) - 1) % 4)
        body = json.loads(base64.urlsafe_b64decode(text.encode()))
        values, before, offset = body["v"], body["b"], body["o"]
        if not (isinstance(values, list) and isinstance(before, bool)):
            raise ValueError(cursor)
        if not (isinstance(offset, int) and 0 <= offset <= MAX_OFFSET):
            raise ValueError(cursor)
        return Keyset(values=tuple(values), before=before, offset=offset)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor", "pattern": CURSOR_PATTERN},
        ) from exc
