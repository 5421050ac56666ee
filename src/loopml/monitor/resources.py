"""Replica resources in a window: the samples the deploy target reported at each monitor
round, reduced per replica slot (``r{revision}/{index}``, the same name across restarts) to
mergeable counts, and the figures a window shows.

| figure | from the samples in the window |
|---|---|
| ``cpu_mean`` / ``cpu_max`` | CPU % of one core between consecutive rounds: mean and peak |
| ``rss_mb_last`` / ``rss_mb_max`` | resident memory of the replica's process tree, MB |
| ``connections_max`` | established TCP connections, peak |
| ``restarts`` | crashes followed by a restart, counted in the window they were seen |

A window's ``cpu_percent`` and ``rss_mb`` (what alert rules watch) are the busiest replica's
mean CPU and the largest replica's peak memory; ``restarts`` adds every replica's.
"""

from __future__ import annotations

from typing import Any

from loopml.core.resources import ReplicaSample

MB = 1024 * 1024


def sample_state(sample: ReplicaSample, restarts: int, at: float) -> dict[str, Any]:
    """The state of one sample taken at ``at`` (Unix seconds); ``restarts`` is how many
    restarts happened since the slot's previous sample."""
    return {
        "pid": sample.pid,
        "samples": 1,
        "cpu_sum": sample.cpu_percent,
        "cpu_max": sample.cpu_percent,
        "rss_max": sample.rss_bytes,
        "rss_last": sample.rss_bytes,
        "connections_max": sample.connections,
        "restarts": restarts,
        "first_at": at,
        "last_at": at,
    }


def _merge_slot(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    newer = b if b["last_at"] >= a["last_at"] else a
    return {
        "pid": newer["pid"],
        "samples": a["samples"] + b["samples"],
        "cpu_sum": a["cpu_sum"] + b["cpu_sum"],
        "cpu_max": max(a["cpu_max"], b["cpu_max"]),
        "rss_max": max(a["rss_max"], b["rss_max"]),
        "rss_last": newer["rss_last"],
        "connections_max": max(a["connections_max"], b["connections_max"]),
        "restarts": a["restarts"] + b["restarts"],
        "first_at": min(a["first_at"], b["first_at"]),
        "last_at": newer["last_at"],
    }


def merge_resources(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two resource states of the same window added."""
    merged = dict(a)
    for slot, counts in b.items():
        merged[slot] = _merge_slot(merged[slot], counts) if slot in merged else counts
    return merged


def resources_summary(state: dict[str, Any]) -> dict[str, Any] | None:
    """A window's resource figures per replica and over all of them (``None`` without a
    sample)."""
    if not state:
        return None
    replicas = [
        {
            "replica": slot,
            "pid": counts["pid"],
            "samples": counts["samples"],
            "cpu_mean": round(counts["cpu_sum"] / counts["samples"], 2),
            "cpu_max": round(counts["cpu_max"], 2),
            "rss_mb_last": round(counts["rss_last"] / MB, 1),
            "rss_mb_max": round(counts["rss_max"] / MB, 1),
            "connections_max": counts["connections_max"],
            "restarts": counts["restarts"],
        }
        for slot, counts in sorted(state.items())
    ]
    return {
        "replicas": replicas,
        "cpu_percent": max(r["cpu_mean"] for r in replicas),
        "rss_mb": max(r["rss_mb_max"] for r in replicas),
        "restarts": sum(r["restarts"] for r in replicas),
    }
