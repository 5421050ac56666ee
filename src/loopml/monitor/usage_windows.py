"""Usage-only windows (``monitor.usage_window``, a minute by default): requests, errors,
latency and callers in windows small enough for the deployment page's charts to draw a line
(60 points for the last hour), written by the engine in the same transaction as the judged
windows (``monitor.windows``).

Nothing that judges reads them: drift episodes, live quality, canaries, alert rules,
/metrics and the figures for a deployment now read the smallest of ``monitor.windows``, and
the usage size is smaller than that (``MonitorSettings.usage_size``, checked when the
settings load and again by the engine), so no reader of a judged size is handed one. Their
state is usage counts alone (no drift sketches, no quality), and they are kept
``usage_retention_days``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from loopml.monitor.quality import empty_quality, quality_summary
from loopml.monitor.usage import merge_usage, usage_of, usage_summary
from loopml.monitor.windows import Piece, split_pieces
from loopml.store.monitor import WindowKey

USAGE_ONLY = "a usage-only window (monitor.usage_window): no drift or quality"
UsagePieces = dict[Piece, dict[str, Any]]
"""Usage counts by model, version and start of a usage-size window."""


def _add(into: UsagePieces, key: Piece, used: dict[str, Any]) -> None:
    into[key] = merge_usage(into[key], used) if key in into else used


def add_rows(into: UsagePieces, rows: pa.Table, seconds: int) -> None:
    """Add the usage of prediction-log ``rows`` to their windows of ``seconds``."""
    for key, part in split_pieces(rows, seconds).items():
        _add(into, key, usage_of(part))


def add_states(into: UsagePieces, states: dict[Piece, dict[str, Any]], seconds: int) -> None:
    """Add the usage of window states (failed requests and callers the gateways counted)."""
    for (model, version, start), state in states.items():
        _add(into, (model, version, start - start % seconds), state["usage"])


def keyed(name: str, pieces: UsagePieces, size: str, tz: Any) -> dict[WindowKey, dict[str, Any]]:
    """The pieces as the store's window keys of deployment ``name``."""
    return {
        (name, model, version, size, datetime.fromtimestamp(start, tz=tz)): used
        for (model, version, start), used in pieces.items()
    }


def usage_window(
    used: dict[str, Any], old: dict[str, Any] | None, start: datetime, seconds: int, elapsed: float
) -> dict[str, Any]:
    """The row of a usage-only window: ``used`` added to the stored ``old`` one."""
    merged = merge_usage(old["state"]["usage"], used) if old else used
    summary = {
        "usage": usage_summary(merged, elapsed),
        "quality": quality_summary(empty_quality(), merged["rows"]),
        "drift": {"status": "off", "reason": USAGE_ONLY},
    }
    return {
        "end": start + timedelta(seconds=seconds),
        "rows": merged["rows"],
        "labels": 0,
        "state": {"usage": merged},
        "summary": summary,
    }
