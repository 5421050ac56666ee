"""Column profiles as small bar charts: a sample of a table's latest version profiled with
``loopml.data.profile``, each column's histogram (numbers) or top values (text) turned into
bars an SVG template draws. Bounded: at most ``PROFILE_ROWS`` rows are read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from loopml.core.datasets import ColumnProfile
from loopml.core.errors import LoopmlError
from loopml.data.canonical import normalize
from loopml.data.profile import profile_column
from loopml.monitor.histograms import Distributions

PROFILE_ROWS = 10_000
"""Rows of the latest version the profiles are computed over (the first ones)."""
WIDTH, HEIGHT = 160, 48
"""The chart's size in SVG units."""


@dataclass(frozen=True)
class Bar:
    """One bar: its box and what it stands for (the title a screen reader and a tooltip
    read)."""

    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass
class ColumnChart:
    """One column's profile and its bars (none for temporal or other columns)."""

    profile: ColumnProfile | None
    name: str
    bars: list[Bar] = field(default_factory=list)
    summary: str = ""
    error: str | None = None


def bars(items: list[tuple[str, float]], top: float | None = None) -> list[Bar]:
    """Bars for ``(title, value)`` pairs, scaled so ``top`` (by default the largest value)
    fills the chart: two charts given the same ``top`` compare by height."""
    if not items:
        return []
    top = top or max(value for _, value in items) or 1
    step = WIDTH / len(items)
    made = []
    for i, (label, value) in enumerate(items):
        height = max(1.0, HEIGHT * value / top) if value else 0.0
        made.append(
            Bar(
                x=round(i * step + 1, 2),
                y=round(HEIGHT - height, 2),
                width=round(max(step - 2, 1), 2),
                height=round(height, 2),
                label=label,
            )
        )
    return made


def _counted(pairs: list[tuple[str, int]]) -> list[Bar]:
    return bars([(f"{label}: {count:,}", count) for label, count in pairs])


@dataclass
class DriftPair:
    """A feature's reference and current histograms on one scale (a drift row's pictures);
    ``distributions`` keeps the shares for the table beside them."""

    reference: list[Bar]
    current: list[Bar]
    distributions: Distributions


def drift_pair(found: Distributions) -> DriftPair:
    """The two charts of one feature's distributions, the same height meaning the same
    share on both."""
    top = max([b.reference for b in found.bins] + [b.current for b in found.bins], default=0)
    reference = bars(
        [(f"{b.label}: {b.reference:.1%} of the training rows", b.reference) for b in found.bins],
        top,
    )
    current = bars(
        [
            (f"{b.label}: {b.current:.1%} of the window ({b.current_rows:,} rows)", b.current)
            for b in found.bins
        ],
        top,
    )
    return DriftPair(reference=reference, current=current, distributions=found)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def chart_of(profile: ColumnProfile) -> ColumnChart:
    """The bars of one column's profile, and a one-line summary in words."""
    made = ColumnChart(profile=profile, name=profile.name)
    if profile.histogram is not None and profile.histogram.counts:
        edges, counts = profile.histogram.edges, profile.histogram.counts
        made.bars = _counted(
            [(f"{_number(edges[i])} to {_number(edges[i + 1])}", c) for i, c in enumerate(counts)]
        )
        made.summary = (
            f"from {_number(profile.min)} to {_number(profile.max)}, mean {_number(profile.mean)}"
        )
    elif profile.top:
        made.bars = _counted([(str(t.value), t.count) for t in profile.top])
        made.summary = f"{profile.distinct or 0:,} distinct values"
    elif profile.min is not None:
        made.summary = f"from {profile.min} to {profile.max}"
    return made


def charts(sample: pa.Table) -> list[ColumnChart]:
    """Every column's chart over ``sample``; a column that cannot be profiled (nested
    types) says why instead."""
    made = []
    for name in sample.column_names:
        try:
            column = normalize(sample.select([name])).column(0)
            made.append(chart_of(profile_column(name, column)))
        except (LoopmlError, pa.ArrowException, ValueError, TypeError) as exc:
            made.append(ColumnChart(profile=None, name=name, error=str(exc)[:200]))
    return made
