"""What the runs pages read from the address bar: the search text (``loopml runs list``'s
filter syntax joined by ``and``), the sort column and order, the page; and the chart data
they embed (metric curves aligned on their steps).

Everything arrives as text and is checked here, so a bad value is a ``ValidationError``
(a 422 page with the parser's message), never a 500 or FastAPI's JSON body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams

from loopml.core.errors import ValidationError
from loopml.core.run_search import (
    ID_PATTERN,
    MAX_FILTERS,
    AnyFilter,
    RunFilter,
    RunOrder,
    RunSearch,
    read_cursor,
)
from loopml.core.runs import MetricPoint

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE = 50
MAX_COMPARE = 20
MAX_QUERY = 8000
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def split_query(text: str) -> list[str]:
    """The filters of ``q``: ``metrics.acc >= 0.9 and params.model = 'a and b'`` → two
    filters (``and`` inside quotes is part of a value)."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        else:
            found = _AND.match(text, i)
            if found:
                parts.append("".join(current))
                current = []
                i = found.end()
                continue
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class RunsQuery:
    """The runs table's address: what to show and in which order."""

    project: str | None
    experiment: str | None
    q: str
    sort: str
    order: str
    cursor: str | None
    limit: int
    parent: str | None = None  # only this run's child runs
    flat: bool = False  # child runs listed with the others, not folded under their parent

    def spec(self) -> RunSearch:
        """The store's search spec; ``ValidationError`` with the parser's message."""
        texts = split_query(self.q)
        if len(texts) > MAX_FILTERS:
            raise ValidationError(f"invalid search: at most {MAX_FILTERS} filters joined by 'and'")
        filters: list[AnyFilter] = [RunFilter.parse(text) for text in texts]
        order_by = [RunOrder.parse(f"{self.sort} {self.order}")] if self.sort else []
        return RunSearch(
            experiment=self.experiment,
            filters=filters,
            order_by=order_by,
            include=["metrics"],
            limit=self.limit,
            cursor=self.cursor,
            children="flat" if self.flat else "folded",
            parent_run_id=self.parent,
        )

    def link(self, **changes: Any) -> dict[str, str]:
        """The query string of this page with ``changes`` (empty values left out)."""
        values = {
            "project": self.project,
            "experiment": self.experiment,
            "q": self.q,
            "sort": self.sort,
            "order": self.order,
            "limit": str(self.limit) if self.limit != DEFAULT_PAGE else None,
            "cursor": self.cursor,
            "parent": self.parent,
            "children": "flat" if self.flat else None,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _text(params: QueryParams, name: str, limit: int = 300) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        raise ValidationError(f"invalid {name}: at most {limit} characters")
    return value


def read_query(params: QueryParams) -> RunsQuery:
    """The runs page's query string, checked."""
    order = _text(params, "order").lower() or "desc"
    if order not in ("asc", "desc"):
        raise ValidationError(f"invalid order {order[:20]!r}: expected asc or desc")
    limit_text = _text(params, "limit") or str(DEFAULT_PAGE)
    if limit_text not in {str(n) for n in PAGE_SIZES}:
        raise ValidationError(
            f"invalid limit {limit_text[:20]!r}: expected one of {', '.join(map(str, PAGE_SIZES))}"
        )
    cursor = _text(params, "cursor", 1100) or _page_cursor(_text(params, "page"), int(limit_text))
    read_cursor(cursor)  # a row offset or a page's keyset; the reason otherwise
    sort = _text(params, "sort")
    if sort:
        RunOrder.parse(sort)  # the parser's message for a bad column
    parent = _text(params, "parent") or None
    if parent is not None and not re.fullmatch(ID_PATTERN, parent):
        raise ValidationError(f"invalid parent {parent[:40]!r}: expected a run id (32 hex digits)")
    children = _text(params, "children") or "folded"
    if children not in ("folded", "flat"):
        raise ValidationError(f"invalid children {children[:20]!r}: expected folded or flat")
    return RunsQuery(
        project=_text(params, "project") or None,
        experiment=_text(params, "experiment") or None,
        q=_text(params, "q", MAX_QUERY),
        sort=sort,
        order=order,
        cursor=cursor,
        limit=int(limit_text),
        parent=parent,
        flat=children == "flat",
    )


def _page_cursor(page: str, limit: int) -> str | None:
    """``page=N`` (1-based) as a row offset."""
    if not page:
        return None
    if not (page.isascii() and page.isdigit() and 1 <= int(page) <= 1_000_000):
        raise ValidationError(f"invalid page {page[:20]!r}: expected a number from 1")
    return str((int(page) - 1) * limit) if int(page) > 1 else None


def read_ids(params: QueryParams) -> list[str]:
    """``ids=a,b`` or ``ids=a&ids=b``: 1 to 20 distinct run ids, in the order given."""
    ids: list[str] = []
    for value in params.getlist("ids"):
        for part in value.split(","):
            part = part.strip()
            if part and part not in ids:
                ids.append(part)
    if not ids:
        raise ValidationError("pick the runs to compare: ids=RUN_ID,RUN_ID,...")
    if len(ids) > MAX_COMPARE:
        raise ValidationError(f"too many runs: compare at most {MAX_COMPARE} at a time")
    bad = [i for i in ids if not _RUN_ID.fullmatch(i)]
    if bad:
        raise ValidationError(f"invalid run id {bad[0][:40]!r}: expected 32 hex digits")
    return ids


def number(value: float | None) -> float | None:
    """A float JSON can carry (NaN and infinities become ``null``)."""
    return None if value is None or not math.isfinite(value) else value


def chart(
    key: str, labels: Sequence[str], histories: Sequence[Sequence[MetricPoint]]
) -> dict[str, Any]:
    """One metric's curves for uPlot: the union of their steps and one series per run
    (``null`` where a run has no point at a step)."""
    steps = sorted({p.step for points in histories for p in points})
    series = []
    for label, points in zip(labels, histories, strict=True):
        by_step = {p.step: number(p.value) for p in points}
        series.append({"label": label, "values": [by_step.get(s) for s in steps]})
    return {"key": key, "steps": steps, "series": series}
