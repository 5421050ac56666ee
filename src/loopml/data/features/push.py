"""Stream push: a stream's micro-batches written straight into feature views' online store.

A stream created with ``push: [view, ...]`` hands every batch it lands (decoded, transformed
and validated, the rows the table gets) to ``OnlinePush`` just before the lake commit: for
each named view whose source is the stream's table, the batch's newest row per entity is
written with the store's newer-wins rule. Writing before the commit means a crash between
the two loses nothing: the batch is redelivered, written again (a no-op, equal event times)
and committed; the online store is never behind the lake for a pushed view.

A view named in ``push`` that does not exist yet is skipped until it does (so a stream can
be created before the view that reads its table is applied); one whose source is not the
stream's table, or that lacks columns the batch has not, fails the commit, which the
stream's status then shows (``failing``, with the reason) until the view is fixed.

Example:
    >>> push = OnlinePush(store, online, "default", "orders", ["order_stats"])
    >>> push(batch)   # pyarrow.Table of the stream's rows
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import NotFoundError, ValidationError
from loopml.data.features import views as view_specs
from loopml.data.features.materialize import newest_per_entity, online_rows
from loopml.data.features.online import OnlineStore, namespace
from loopml.data.features.views import check_against
from loopml.store import MetadataStore


def check_push(store: MetadataStore, project: str, table: str, names: list[str]) -> None:
    """Refuse a push to an existing view that does not read ``table``.

    Raises:
        ValidationError: a view whose source is not the stream's table.
    """
    for name in names:
        try:
            view = view_specs.get(store, project, name)
        except NotFoundError:
            continue  # pushed once it is applied
        _check_source(view.spec.source, table, name)


def _check_source(source: str, table: str, name: str) -> None:
    if source != table:
        raise ValidationError(
            f"feature view {name!r} reads {source[:200]!r}, not the stream's table {table!r}: "
            "only a view whose source is the table itself can be pushed to",
            details={"field": "push", "view": name},
        )


class OnlinePush:
    """Writes each batch's newest values per entity into the named views' online store.

    Args:
        store: the metadata store (the views' specs, read per batch: a new version is seen
            by the next batch).
        online: the online store.
        project: the stream's project; ``table`` its table.
        views: the views to push to.
    """

    def __init__(
        self,
        store: MetadataStore,
        online: OnlineStore,
        project: str,
        table: str,
        views: list[str],
        *,
        chunk_rows: int = 10_000,
    ) -> None:
        self.store, self.online, self.project, self.table = store, online, project, table
        self.views = views
        self.chunk_rows = chunk_rows
        self.written = 0
        """Entities written so far (for tests and stats)."""

    def __call__(self, rows: pa.Table) -> None:
        """Push ``rows`` to every view that exists (see the module).

        Raises:
            ValidationError: a view whose source is not the table, or columns it lacks.
        """
        for name in self.views:
            try:
                view = view_specs.get(self.store, self.project, name)
            except NotFoundError:
                continue
            _check_source(view.spec.source, self.table, name)
            check_against(view.spec, rows.schema)
            spec = view.spec
            picked = rows.select([*spec.entities, spec.event_time, *spec.features])
            stamps = pc.cast(picked.column(spec.event_time), pa.timestamp("us", tz="UTC"))
            picked = picked.set_column(
                picked.schema.get_field_index(spec.event_time), spec.event_time, stamps
            )
            newest = newest_per_entity(picked, view)
            for chunk in online_rows(newest, view, self.chunk_rows):
                self.online.write_batch(namespace(self.project, name), chunk)
                self.written += len(chunk)
