"""The DAG picture's layout: nothing drawn past the page's width at 1,280 px."""

from __future__ import annotations

from itertools import pairwise

from loopml.portal.pages._dag import BOX_H, BOX_W, MAX_WIDTH, layout

RETRAIN = ["validate", "snapshot", "split", "train", "register", "evaluate", "gate", "promote",
           "deploy"]  # fmt: skip


def _chain(names: list[str]) -> dict[str, list[str]]:
    return {b: [a] for a, b in pairwise(names)}


def test_a_long_chain_runs_down_the_page_inside_its_width() -> None:
    # Left to right, the retrain pipeline's nine steps took 2,078 px: cut at "evaluate".
    dag = layout(RETRAIN, _chain(RETRAIN), {})
    assert dag.width <= MAX_WIDTH
    for node in dag.nodes:
        assert node.x >= 0, node
        assert node.x + BOX_W <= dag.width, node
        assert node.y >= 0, node
        assert node.y + BOX_H <= dag.height, node
    assert [n.name for n in sorted(dag.nodes, key=lambda n: n.y)] == RETRAIN
    assert len(dag.edges) == len(RETRAIN) - 1
    assert all(e.y2 > e.y1 and e.x1 == e.x2 for e in dag.edges)  # each arrow points down


def test_a_short_graph_stays_left_to_right() -> None:
    dag = layout(["greet", "wave", "shout"], {"shout": ["greet"]}, {})
    greet, wave, shout = dag.nodes
    assert greet.y == shout.y
    assert shout.x > greet.x
    assert wave.x == greet.x
    (edge,) = dag.edges
    assert edge.y1 == edge.y2
    assert edge.x2 > edge.x1
