"""Pipeline workers' reports of the nodes their executor runs steps on: each worker writes
its own row when it starts and again every ``REPORT_EVERY_S``; ``pipelines apply`` reads
the recent ones to refuse a step no node could ever run."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.step_resources import NodeShape
from loopml.store.orm import PipelineWorkerRow

FORGET_AFTER = timedelta(days=7)
"""A report older than this is deleted by the next report (workers come and go by name)."""
MAX_NODES = 200


def report(
    session: Session,
    worker: str,
    executor: str,
    nodes: list[NodeShape],
    now: datetime | None = None,
) -> None:
    """Record that ``worker`` is alive now and what its nodes offer (distinct shapes)."""
    now = now or utcnow()
    shapes = sorted({n.model_dump_json(): n for n in nodes}.values(), key=lambda n: n.cpus)
    data = [n.model_dump(mode="json") for n in shapes[-MAX_NODES:]]
    row = session.scalars(
        select(PipelineWorkerRow).where(PipelineWorkerRow.worker == worker)
    ).first()
    if row is None:
        session.add(PipelineWorkerRow(worker=worker, executor=executor, nodes=data, seen_at=now))
    else:
        row.executor, row.nodes, row.seen_at = executor, data, now
    session.execute(
        delete(PipelineWorkerRow)
        .where(PipelineWorkerRow.seen_at < now - FORGET_AFTER)
        .execution_options(synchronize_session=False)
    )
    session.flush()


def nodes_seen(session: Session, since: datetime) -> list[NodeShape]:
    """The node shapes of every worker that reported at or after ``since``."""
    rows = session.scalars(
        select(PipelineWorkerRow.nodes).where(PipelineWorkerRow.seen_at >= since)
    )
    return [NodeShape.model_validate(node) for nodes in rows for node in nodes or []]
