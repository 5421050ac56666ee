"""Each model version's figures over a stretch of time, from the stored windows: what a
canary is judged by (``core.canary``).

A window holds counts that add, so the windows of the smallest size from the one holding
``since`` onwards are summed per model version (usage and quality only; drift is not
judged here) and summarised once. The first window may hold rows from before ``since``:
windows are the monitor's grain, and for the stable revision those rows are as good a
baseline as the later ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loopml.core.canary import Figures
from loopml.monitor.quality import empty_quality, merge_quality, quality_summary
from loopml.monitor.usage import empty_usage, merge_usage, usage_summary
from loopml.monitor.windows import parse_sizes, window_start
from loopml.settings import MonitorSettings
from loopml.store import MetadataStore
from loopml.store import monitor as rows

MAX_WINDOWS = 2000

Version = tuple[str, int]


def smallest_size(sizes: list[str]) -> str:
    """The smallest of the monitor's window sizes (``["1h", "1d"]`` -> ``"1h"``)."""
    return next(iter(parse_sizes(sizes)))


def judged_size(settings: MonitorSettings) -> str:
    """The size canaries (and drift, quality and alert rules) are judged by: the smallest of
    ``windows``, never the usage-only ``usage_window`` (smaller, and not one of them)."""
    return smallest_size(settings.windows)


def figures_since(
    store: MetadataStore, project: str, deployment: str, since: datetime, size: str
) -> dict[Version, Figures]:
    """Per model version, its figures in the windows of ``size`` from ``since`` on."""
    seconds = parse_sizes([size])[size]
    first = window_start(since, seconds)
    with store.session() as session:
        windows = rows.list_windows(
            session, project, deployment, size=size, since=first, limit=MAX_WINDOWS
        )
    merged: dict[Version, tuple[dict[str, Any], dict[str, Any]]] = {}
    for window in windows:
        if not window["model"]:
            continue  # requests no replica answered belong to no version
        key = (window["model"], int(window["version"]))
        usage, quality = merged.get(key, (empty_usage(), empty_quality()))
        state = window["state"]
        merged[key] = (
            merge_usage(usage, state["usage"]),
            merge_quality(quality, state["quality"]),
        )
    return {key: _figures(usage, quality) for key, (usage, quality) in merged.items()}


def _figures(usage: dict[str, Any], quality: dict[str, Any]) -> Figures:
    used = usage_summary(usage, 0.0)
    judged = quality_summary(quality, usage["rows"])
    metric = "accuracy" if "accuracy" in judged else "r2" if "r2" in judged else None
    return Figures(
        requests=used["requests"],
        errors=used["errors"],
        latency_p95_ms=used["latency_p95_ms"],
        labels=judged["labels"],
        quality=judged.get(metric) if metric else None,
        quality_metric=metric,
    )
