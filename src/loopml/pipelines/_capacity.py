"""Whether the steps of a spec could ever run: each step's ``resources`` against the nodes
the workers reported lately (``store.pipeline_workers``). One attempt runs on one node, so a
step fits when one node has all it asks for."""

from __future__ import annotations

from datetime import timedelta

from loopml.core.clock import utcnow
from loopml.core.errors import ValidationError
from loopml.core.step_resources import NodeShape, StepResources, largest
from loopml.pipelines.spec import PipelineSpec
from loopml.store import MetadataStore
from loopml.store import pipeline_workers as workers_repo

LIVE_WINDOW = timedelta(minutes=10)
"""A worker that reported within this long counts as part of the platform now (workers
report every ``REPORT_EVERY_S``)."""
REPORT_EVERY_S = 60.0
_MINUTES = int(LIVE_WINDOW.total_seconds() // 60)


def cpu_limit(nodes: list[NodeShape], given: float | None, concurrency: int) -> float:
    """What a local worker's running steps' ``cpus`` may add up to: ``given``
    (``worker.executor.cpus``) when set, else the larger of the machine's CPUs and
    ``concurrency``: steps that ask for nothing (1 CPU each) still run ``concurrency`` at
    once, as before steps had resources; an operator who set it above the CPU count chose
    to overcommit."""
    machine = max(node.cpus for node in nodes)
    return machine if given else max(machine, float(concurrency))


def check_resources(store: MetadataStore, spec: PipelineSpec) -> list[str]:
    """The warnings of an apply that could not check the resources (no worker reported
    lately: workers may start after the pipeline is applied).

    Raises:
        ValidationError: a step asks for more than any recently seen node has; the message
            names the step, what it asked, and the largest node.
    """
    asking = {step.name: step.resources for step in spec.steps if step.resources is not None}
    if not asking:
        return []
    with store.session() as session:
        nodes = workers_repo.nodes_seen(session, utcnow() - LIVE_WINDOW)
    if not nodes:
        names = ", ".join(repr(name) for name in asking)
        return [
            f"no pipeline worker reported its nodes in the last {_MINUTES} minutes, so the "
            f"resources of step(s) {names} were not checked: a step no node can run stays "
            "queued"
        ]
    refused = {
        name: asked for name, asked in asking.items() if not any(node.fits(asked) for node in nodes)
    }
    if refused:
        raise _refusal(refused, nodes)
    return []


def _refusal(refused: dict[str, StepResources], nodes: list[NodeShape]) -> ValidationError:
    biggest = largest(nodes)
    assert biggest is not None
    asked = "; ".join(f"step {name!r} asks for {r.describe()}" for name, r in refused.items())
    them = "it" if len(refused) == 1 else "them"
    return ValidationError(
        f"{asked}; no node can run {them}: the largest node of the workers seen in the last "
        f"{_MINUTES} minutes has {biggest.describe()}. Ask for less, or add a worker (or a "
        "Ray node) that has it",
        details={
            "steps": {name: r.model_dump(exclude_none=True) for name, r in refused.items()},
            "largest_node": biggest.model_dump(),
        },
    )
