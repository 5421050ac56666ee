"""The deployment page's usage charts over a chosen period (the last hour by default): the
time axis spans exactly that period, one point per bucket of it, from the monitor's windows.

The windows come from the largest stored size (``monitor.windows`` and the usage-only
``monitor.usage_window``, ``stored_sizes``) that still gives the period ``MIN_POINTS``
points, else the smallest: with the defaults, the last hour and 6 hours from 1-minute
windows, 24 hours and 7 days from 1-hour ones; when that is more than ``MAX_POINTS``
points, consecutive windows are rolled up (requests and errors added, the latency of the
busiest window kept). A bucket with no window drew nothing: its requests and errors are 0
and its latency is absent, so the line runs across the whole period; except a bucket the
monitor may not have counted yet (it ends within ``pending_s`` of now), which is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopml.core.clock import as_utc
from loopml.core.errors import ValidationError
from loopml.faces.context import MetadataStore
from loopml.monitor import service as monitor
from loopml.monitor.windows import parse_size
from loopml.settings import MonitorSettings

PERIODS = {"1h": "last hour", "6h": "last 6 h", "24h": "last 24 h", "7d": "last 7 days"}
"""The periods offered, by their query value (``?period=6h``)."""
DEFAULT_PERIOD = "1h"
MIN_POINTS = 24
MAX_POINTS = 200


@dataclass(frozen=True)
class UsageChart:
    """The series drawn, the period (``start`` to ``end``, Unix seconds) and its buckets."""

    period: str
    start: float
    end: float
    bucket_s: int
    size: str
    series: dict[str, list[float | None]]

    def as_json(self) -> dict[str, Any]:
        """What the page embeds for its script."""
        return {"min": self.start, "max": self.end, "bucket_s": self.bucket_s, **self.series}


def period_seconds(period: str) -> int:
    """``"24h"`` -> 86,400, for one of ``PERIODS``.

    Raises:
        ValidationError: a period that is not offered.
    """
    if period not in PERIODS:
        raise ValidationError(
            f"unknown period {period[:20]!r}: expected one of {', '.join(PERIODS)}",
            details={"field": "period"},
        )
    return parse_size(period)


def stored_sizes(settings: MonitorSettings) -> list[str]:
    """The window sizes the monitor writes: ``windows`` and the usage-only size, if any."""
    usage = settings.usage_size()
    return [*settings.windows, *([usage[0]] if usage else [])]


def bucket_of(period_s: int, sizes: list[str]) -> tuple[str, int]:
    """The stored size read and the bucket drawn for a period of ``period_s``."""
    by_seconds = sorted((parse_size(s), s) for s in sizes)
    fitting = [(sec, s) for sec, s in by_seconds if period_s // sec >= MIN_POINTS]
    seconds, size = fitting[-1] if fitting else by_seconds[0]
    factor = max(1, math.ceil(period_s / seconds / MAX_POINTS))
    return size, seconds * factor


def usage_chart(
    store: MetadataStore,
    project: str,
    name: str,
    sizes: list[str],
    period: str,
    now: datetime,
    pending_s: float = 0.0,
) -> UsageChart:
    """The chart of ``period`` ending ``now`` (blocking: run it in a worker thread);
    ``pending_s``: how long the monitor may take to count a request."""
    period_s = period_seconds(period)
    size, bucket_s = bucket_of(period_s, sizes)
    end = as_utc(now).timestamp()
    first = math.floor((end - period_s) / bucket_s) * bucket_s + bucket_s
    starts = [float(t) for t in range(int(first), int(end) + 1, bucket_s)]
    since = datetime.fromtimestamp(first, UTC)
    found = monitor.deployment_usage(store, project, name, size=size, since=since)
    buckets: dict[float, list[dict[str, Any]]] = {t: [] for t in starts}
    for window in found:
        moment = as_utc(window["start"]).timestamp()
        key = float(moment - (moment - first) % bucket_s)
        if key in buckets:
            buckets[key].append(window["usage"])
    series: dict[str, list[float | None]] = {
        k: [] for k in ("t", "rps", "errors", "p50", "p95", "p99")
    }
    for start, used in buckets.items():
        busiest = max(used, key=lambda u: u.get("requests", 0), default={})
        series["t"].append(start)
        if not used and start + bucket_s > end - pending_s:  # not counted yet: no 0 drawn
            series["rps"].append(None)
            series["errors"].append(None)
        else:
            series["rps"].append(sum(u.get("requests", 0) for u in used) / bucket_s)
            series["errors"].append(float(sum(u.get("errors", 0) for u in used)))
        for q in ("p50", "p95", "p99"):
            series[q].append(busiest.get(f"latency_{q}_ms"))
    return UsageChart(period, end - period_s, end, bucket_s, size, series)
