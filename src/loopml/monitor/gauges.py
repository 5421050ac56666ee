"""What the monitor's Prometheus gauges say: each model version's figures over a trailing
stretch of time, so that a series stays while the figure it stands for is known.

A gauge read from the newest window alone came and went: right after a window turned it held
a few requests and no label yet, so ``loopml_monitor_accuracy`` vanished (and the drift
gauges with it) until the first label of the new window landed, and a dashboard's range
query found no series. Here each version that answered within the last ``TRAILING_S``
seconds (or whose labels are within the look-back) is summed over:

- **drift** (``drift`` of the summary): the smallest windows covering the last hour, as an
  alert rule of ``1h`` reads them (``trailing``);
- **live quality** (``quality``): the same stretch, reaching further back, one smallest
  window at a time, until it holds ``ENOUGH_LABELS`` labels (labels join the window of the
  prediction they label, so when they come late the last hour has none yet), at most
  ``LOOK_BACK_WINDOWS`` windows; ``quality_seconds`` says how far back it reached.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopml.core.clock import as_utc
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference
from loopml.monitor.trailing import span_start
from loopml.monitor.windows import merge_state, summarize

TRAILING_S = 3600
"""The stretch every gauge reads at least: the last hour."""
ENOUGH_LABELS = 50
"""Labels the accuracy gauge reaches back for before it stops at the last hour's."""
LOOK_BACK_WINDOWS = 48
"""How many smallest windows of a version the quality gauge reads at most (two days of the
default hourly windows)."""


@dataclass(frozen=True)
class Gauge:
    """One model version's figures for ``/metrics``."""

    model: str
    version: int
    drift: dict[str, Any]
    """The drift summary over the last hour (empty: no row in it)."""
    quality: dict[str, Any]
    """The quality summary over ``quality_seconds`` (empty: no labelled window)."""
    quality_seconds: float


def look_back_start(now: datetime, smallest: int) -> datetime:
    """The start of the oldest window the gauges may read."""
    return span_start(now, max(TRAILING_S, LOOK_BACK_WINDOWS * smallest), smallest)


def _merged(windows: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, Any] = windows[-1]["state"]  # the oldest
    for window in reversed(windows[:-1]):
        state = merge_state(state, window["state"])
    return state


def _labelled(newest_first: list[dict[str, Any]], hour: datetime) -> list[dict[str, Any]]:
    """The shortest stretch from the last hour back holding ``ENOUGH_LABELS`` labels (as
    far as the look-back goes when none does), newest first; empty without a label."""
    taken: list[dict[str, Any]] = []
    labels = 0
    for window in newest_first[:LOOK_BACK_WINDOWS]:
        if as_utc(window["start"]) < hour and labels >= ENOUGH_LABELS:
            break
        taken.append(window)
        labels += int(window.get("labels") or 0)
    return taken if labels else []


def _summed(
    taken: list[dict[str, Any]], now: datetime, known: Reference | None, config: DriftConfig
) -> dict[str, Any]:
    """The summary of ``taken`` (newest first) merged, over the time from its start to now."""
    covered = max((now - as_utc(taken[-1]["start"])).total_seconds(), 1.0)
    return summarize(_merged(taken), known, covered, config)


def gauges(
    windows: list[dict[str, Any]],
    now: datetime,
    smallest: int,
    reference: Callable[[str, int], Reference | None],
    config: DriftConfig,
) -> list[Gauge]:
    """Every version's gauges from ``windows`` (the smallest size, any order), at ``now``."""
    now = as_utc(now)
    hour = span_start(now, TRAILING_S, smallest)
    versions: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for window in sorted(windows, key=lambda w: as_utc(w["start"]), reverse=True):
        if window["model"] and as_utc(window["start"]) <= now:
            versions[(window["model"], window["version"])].append(window)
    found = []
    for (model, version), newest_first in sorted(versions.items()):
        known = reference(model, version)
        recent = [w for w in newest_first if as_utc(w["start"]) >= hour]
        drift = _summed(recent, now, known, config)["drift"] if recent else {}
        labelled = _labelled(newest_first, hour)
        quality = _summed(labelled, now, known, config)["quality"] if labelled else {}
        seconds = (now - as_utc(labelled[-1]["start"])).total_seconds() if labelled else 0.0
        if recent or labelled:
            found.append(Gauge(model, version, drift, quality, seconds))
    return found
