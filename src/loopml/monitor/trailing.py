"""What an alert rule reads: the last stretch of time of the rule's size, summed from the
smallest windows.

A rule over ``W`` seconds judges ``(now - W, now]``, not the newest tumbling window of size
``W``, which right after it turns holds a few seconds of traffic (a rule on ``requests`` read
it as a drop). Windows store counts that add, so the smallest windows covering that stretch
(from the one holding ``now - W`` to the current, partial, one) are merged into one state and
summarized, per model version, and the version serving the deployment now is judged
(``Deployment.serving``, the version every face shows; the busiest, most rows, when no
version takes traffic).

What is read reaches back at most one smallest window further than ``W``: ratios,
percentiles, drift and quality are computed over all of it and the request rate over the time
it covers (from the oldest window's start to ``now``). The two counts, ``requests`` and
``restarts``, take only the share of the oldest window inside ``(now - W, now]``,
``(start + s - (now - W)) / s`` of its count, as a sliding-window counter does: exact when
that window's traffic is even over it. A rule shorter than the smallest window reads the
current smallest window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from loopml.core.alerts import metric_value
from loopml.core.clock import as_utc
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference
from loopml.monitor.windows import merge_state, summarize, window_start

COUNT_METRICS = frozenset({"requests", "restarts"})


@dataclass(frozen=True)
class Trailing:
    """The merged windows of one model version over a rule's stretch of time."""

    model: str
    version: int
    summary: dict[str, Any]
    oldest: dict[str, Any]
    """The summary of the oldest window alone (the counts' partial share comes off it)."""
    outside: float
    """The share of the oldest window before ``now - W`` (0 when it lies wholly inside)."""

    def value(self, metric: str) -> float | None:
        """``metric`` over the stretch (``None`` when not measured)."""
        value = metric_value(self.summary, metric)
        if value is None or metric not in COUNT_METRICS or not self.outside:
            return value
        return value - self.outside * (metric_value(self.oldest, metric) or 0.0)


def span_start(now: datetime, seconds: int, smallest: int) -> datetime:
    """The start of the oldest smallest window read: the one holding ``now - seconds`` (the
    current one for a rule shorter than a smallest window)."""
    if seconds < smallest:
        return window_start(now, smallest)
    return window_start(now - timedelta(seconds=seconds), smallest)


def trailing(
    windows: list[dict[str, Any]],
    now: datetime,
    seconds: int,
    smallest: int,
    reference: Callable[[str, int], Reference | None],
    config: DriftConfig,
    serving: tuple[str, int] | None = None,
) -> Trailing | None:
    """The ``serving`` version's windows of ``windows`` (the smallest size) over
    ``(now - seconds, now]`` (the busiest version's when ``serving`` is ``None``), merged
    and summarized; ``None`` without any."""
    now = as_utc(now)
    first = span_start(now, seconds, smallest)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for window in sorted(windows, key=lambda w: as_utc(w["start"])):
        if first <= as_utc(window["start"]) <= now:
            groups[(window["model"], window["version"])].append(window)
    if serving is not None:
        groups = {serving: groups[serving]} if serving in groups else {}
    if not groups:
        return None
    (model, version), group = max(
        groups.items(), key=lambda item: (sum(w["rows"] for w in item[1]), item[0])
    )
    state = group[0]["state"]
    for window in group[1:]:
        state = merge_state(state, window["state"])
    known = reference(model, version) if model else None
    covered = max((now - first).total_seconds(), 1.0)
    summary = summarize(state, known, covered, config)
    outside = 0.0
    if seconds >= smallest and as_utc(group[0]["start"]) == first:
        begin = now - timedelta(seconds=seconds)
        outside = min(max((begin - first).total_seconds() / smallest, 0.0), 1.0)
    oldest = summarize(group[0]["state"], known, float(smallest), config) if outside else {}
    return Trailing(model, version, summary, oldest, outside)
