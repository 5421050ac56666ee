"""What ``bench/automl.py`` prints: each data set's table, its verdict, and the summary of
issue 38's targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from _automl_data import DATASETS, DataSet, lower_is_better
from _automl_peers import Result

TARGET_OVERHEAD = 0.10
"""loopml's wall time may be 0.9-1.1 x the budget."""


def print_results(
    name: str, spec: DataSet, rows: int, budget: float, results: list[Result]
) -> None:
    better = "lower" if lower_is_better(spec.metric) else "higher"
    print(
        f"\n{name}: {spec.task}, {spec.metric} ({better} is better) on {rows} held-out rows, "
        f"budget {budget:g} s"
    )
    header = f"{'score':>10} {'wall s':>8} {'wall/budget':>12} {'size MB':>8} {'1 row ms':>9}"
    print(f"  {'':<30} {header}")
    for r in results:
        searched = any(word in r.label for word in ("FLAML", "loopml", "AutoGluon"))
        ratio = f"{r.wall_s / budget:11.2f}x" if searched else ""
        size = f"{r.size_mb:8.2f}" if r.size_mb is not None else ""
        latency = f"{r.one_row_ms:9.3f}" if r.one_row_ms is not None else ""
        print(f"  {r.label:<30} {r.score:10.4f} {r.wall_s:8.2f} {ratio:>12} {size:>8} {latency:>9}")
        if r.note:
            print(f"  {'':<30} {r.note}")


def at_least_as_good(metric: str, mine: float, other: float) -> bool:
    return mine <= other if lower_is_better(metric) else mine >= other


def shortfall(metric: str, mine: float, other: float) -> float:
    """How much worse ``mine`` is than ``other``, as a share of ``other`` (negative: better)."""
    gap = (mine - other) if lower_is_better(metric) else (other - mine)
    return gap / abs(other)


def verdict_of(spec: DataSet, results: list[Result]) -> str:
    mine, *rest = results
    others = [r for r in rest if not r.label.startswith("loopml")]
    beaten = [r.label for r in others if not at_least_as_good(spec.metric, mine.score, r.score)]
    return "loopml >= all" if not beaten else f"loopml behind: {', '.join(beaten)}"


@dataclass
class Outcome:
    """One data set's figures for the summary."""

    name: str
    metric: str
    used: list[float]  # wall time over budget of each loopml run
    verdict: str
    mine: Result
    peers: dict[str, Result]


def beats_medium(o: Outcome) -> bool:
    return at_least_as_good(o.metric, o.mine.score, o.peers["medium_quality"].score)


def summary(outcomes: list[Outcome], budget: float) -> None:
    """One line per target of issue 38, met or missed."""

    def said(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"\nsummary at --budget {budget:g} s, {len(outcomes)} data sets:")
    medium = [o for o in outcomes if "medium_quality" in o.peers]
    six = [o for o in medium if o.name in DATASETS]
    if six:
        wins = [o.name for o in six if beats_medium(o)]
        print(
            f"  score >= AutoGluon medium_quality on {len(wins)} of {len(six)} of issue 38's "
            f"data sets ({', '.join(wins) or 'none'}; target 5 of 6 at 60 s): "
            f"{said(len(wins) >= min(5, len(six)) and len(six) >= 6)}"
        )
    for o in medium:
        if o.name in DATASETS or o.metric != "rmse":
            continue
        gap = shortfall(o.metric, o.mine.score, o.peers["medium_quality"].score)
        print(f"  {o.name}: RMSE {100 * gap:+.2f} % against AutoGluon medium_quality's")
    best = [o for o in outcomes if "best_quality" in o.peers]
    if best:
        gaps = sorted(
            shortfall(o.metric, o.mine.score, o.peers["best_quality"].score) for o in best
        )
        median = float(np.median(gaps))
        print(
            f"  shortfall against AutoGluon best_quality, median data set: {100 * median:+.2f} % "
            f"(each: {', '.join(f'{100 * g:+.2f} %' for g in gaps)}; target <= 1 % at 300 s): "
            f"{said(median <= 0.01)}"
        )
    peers = [(o, p) for o in outcomes for p in o.peers.values()]
    if peers:
        sizes = [p.size_mb / o.mine.size_mb for o, p in peers if p.size_mb and o.mine.size_mb]
        speeds = [
            p.one_row_ms / o.mine.one_row_ms for o, p in peers if p.one_row_ms and o.mine.one_row_ms
        ]
        print(
            f"  AutoGluon's predictor folder over loopml's package: {min(sizes):.1f}x to "
            f"{max(sizes):.1f}x (target >= 10x): {said(min(sizes) >= 10)}"
        )
        print(
            f"  one-row latency, AutoGluon predict over loopml's model server: "
            f"{min(speeds):.1f}x to {max(speeds):.1f}x (target >= 10x): {said(min(speeds) >= 10)}"
        )
    else:
        print("  AutoGluon: not run (no --autogluon-python): its targets are not measured")
    used = [u for o in outcomes for u in o.used]
    kept = max(used) <= 1 + TARGET_OVERHEAD and min(used) >= 1 - TARGET_OVERHEAD
    print(
        f"  loopml wall time over budget: {min(used):.2f}x to {max(used):.2f}x (target "
        f"{1 - TARGET_OVERHEAD:.1f}x to {1 + TARGET_OVERHEAD:.1f}x, unless the search space "
        f"ran out): {said(kept)}"
    )
    print("  " + "; ".join(f"{o.name}: {o.verdict}" for o in outcomes))
