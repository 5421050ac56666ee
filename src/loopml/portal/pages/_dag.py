"""A pipeline's steps (or a model version's lineage) laid out as a DAG for an SVG picture:
a column per topological depth (a step sits one column right of its deepest upstream step),
a row per step in its column, and a line from each upstream step to the step that needs it.
A graph wider than the page's ``MAX_WIDTH`` (a long chain of steps) is drawn top to bottom
instead (a row per depth), so nothing is cut off at 1,280 px. Each box carries its state in
words as well as in colour, and may link to a page."""

from __future__ import annotations

from dataclasses import dataclass

BOX_W, BOX_H = 170, 46
GAP_X, GAP_Y = 60, 18
DOWN_GAP_X, DOWN_GAP_Y = 18, 28
"""The gaps of a graph drawn top to bottom (room for the arrow between rows)."""
PAD = 8
MAX_WIDTH = 1232
"""The page's content width at a 1,280 px window: a wider graph is drawn top to bottom."""


@dataclass(frozen=True)
class Node:
    """One step's box."""

    name: str
    state: str
    x: int
    y: int
    note: str = ""
    """The box's second line (the state when empty)."""
    href: str | None = None
    """The page the box links to, if any."""
    label: str = ""
    """The box's first line (the name when empty: names must be unique, labels need not)."""


@dataclass(frozen=True)
class Edge:
    """A line from an upstream step's right side to its downstream step's left side."""

    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Dag:
    """The laid-out picture."""

    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    box_w: int = BOX_W
    box_h: int = BOX_H


def _depths(order: list[str], needs: dict[str, list[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    pending = list(order)
    # ``order`` is topological where it comes from a spec or a run; a loop over passes
    # still settles any order (a step waits for its upstream steps' depths).
    for _ in range(len(pending) + 1):
        left = []
        for name in pending:
            ups = [u for u in needs.get(name, []) if u in order]
            if all(u in depth for u in ups):
                depth[name] = 1 + max((depth[u] for u in ups), default=-1)
            else:
                left.append(name)
        pending = left
        if not pending:
            break
    for name in pending:  # a cycle cannot be stored; draw what is left in one column
        depth[name] = 0
    return depth


def layout(
    order: list[str],
    needs: dict[str, list[str]],
    states: dict[str, str],
    *,
    notes: dict[str, str] | None = None,
    links: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Dag:
    """The boxes and lines of steps ``order`` with upstream ``needs`` and ``states`` (and
    each box's second line and link, where given)."""
    notes, links, labels = notes or {}, links or {}, labels or {}
    depth = _depths(order, needs)
    rows: dict[int, int] = {}
    grid: dict[str, tuple[int, int]] = {}
    for name in order:
        column = depth[name]
        grid[name] = (column, rows.get(column, 0))
        rows[column] = grid[name][1] + 1
    columns = max(depth.values(), default=0) + 1
    tallest = max(rows.values(), default=1)
    width = 2 * PAD + columns * BOX_W + (columns - 1) * GAP_X
    down = width > MAX_WIDTH
    if down:  # depth runs down the page, steps of one depth side by side
        width = 2 * PAD + tallest * BOX_W + (tallest - 1) * DOWN_GAP_X
        height = 2 * PAD + columns * BOX_H + (columns - 1) * DOWN_GAP_Y
    else:
        height = 2 * PAD + tallest * BOX_H + (tallest - 1) * GAP_Y
    where: dict[str, tuple[int, int]] = {}
    nodes = []
    for name in order:
        column, row = grid[name]
        if down:
            x, y = PAD + row * (BOX_W + DOWN_GAP_X), PAD + column * (BOX_H + DOWN_GAP_Y)
        else:
            x, y = PAD + column * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y)
        where[name] = (x, y)
        state = states.get(name, "planned")
        nodes.append(
            Node(
                name=name,
                state=state,
                x=x,
                y=y,
                note=notes.get(name, ""),
                href=links.get(name),
                label=labels.get(name, ""),
            )
        )
    edges = []
    for name in order:
        x2, y2 = where[name]
        for upstream in needs.get(name, []):
            if upstream not in where:
                continue
            x1, y1 = where[upstream]
            if down:  # bottom of the upstream box to the top of this one
                edges.append(Edge(x1 + BOX_W // 2, y1 + BOX_H, x2 + BOX_W // 2, y2))
            else:
                edges.append(Edge(x1 + BOX_W, y1 + BOX_H // 2, x2, y2 + BOX_H // 2))
    return Dag(nodes=nodes, edges=edges, width=width, height=height)
