"""Whether the steps of a spec could ever run: each step's ``resources`` against the nodes
the workers reported lately (``store.pipeline_workers``). One attempt runs on one node, so a
step fits when one node has all it asks for."""

from __future__ import annotations

from datetime import timedelta

from loopml.core.clock import utcnow
from loopml.core.errors import ValidationError
from loopml.core.step_resources import largest
from loopml.pipelines.spec import PipelineSpec
from loopml.store import MetadataStore
from loopml.store import pipeline_workers as workers_repo

LIVE_WINDOW = timedelta(minutes=10)
"""A worker that reported within this long counts as part of the platform now (workers
report every ``REPORT_EVERY_S``)."""
REPORT_EVERY_S = 60.0


def check_resources(store: MetadataStore, spec: PipelineSpec) -> list[str]:
    """The warnings of an apply that could not check the resources (no worker reported
    lately: workers may start after the pipeline is applied).

    Raises:
        ValidationError: a step asks for more than any recently seen node has; the message
            names the step, what it asked, and the largest node.
    """
    asking = [step for step in spec.steps if step.resources is not None]
    if not asking:
        return []
    with store.session() as session:
        nodes = workers_repo.nodes_seen(session, utcnow() - LIVE_WINDOW)
    minutes = int(LIVE_WINDOW.total_seconds() // 60)
    if not nodes:
        names = ", ".join(repr(step.name) for step in asking)
        return [
            f"no pipeline worker reported its nodes in the last {minutes} minutes, so the "
            f"resources of step(s) {names} were not checked: a step no node can run stays "
            "queued"
        ]
    biggest = largest(nodes)
    assert biggest is not None
    refused = [
        step for step in asking if step.resources and not any(n.fits(step.resources) for n in nodes)
    ]
    if not refused:
        return []
    asked = "; ".join(
        f"step {step.name!r} asks for {step.resources.describe()}"
        for step in refused
        if step.resources
    )
    them = "it" if len(refused) == 1 else "them"
    raise ValidationError(
        f"{asked}; no node can run {them}: the largest node of the workers seen in the last "
        f"{minutes} minutes has {biggest.describe()}. Ask for less, or add a worker (or a "
        "Ray node) that has it",
        details={
            "steps": {
                step.name: step.resources.model_dump(exclude_none=True)
                for step in refused
                if step.resources
            },
            "largest_node": biggest.model_dump(),
        },
    )
