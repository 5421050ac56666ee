"""Filling the online store from a view's source, and reading it back.

``materialize`` writes each entity's newest row. Incremental (the default once a version
was materialized) reads only the source rows whose event time is after the watermark the
last run recorded, so a second run with nothing new writes nothing; a full run, or a new
version of the view, reads everything (a new version first forgets the old version's
rows). Writes are newer-wins in the store, so a run repeated after a crash, or one that
overlaps another, never puts an older value over a newer one. The watermark is recorded
only after every chunk was written: a run that dies is simply run again.

A row that arrives late — with an event time at or before the watermark — is not picked
up by an incremental run; run ``--full`` for sources that receive late rows.

Example:
    >>> done = materialize(store, artifacts, online, "default", "user_stats", actor="me")
    >>> read_online(store, online, "default", "user_stats", [{"user_id": 1}])
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from loopml.core.errors import ValidationError
from loopml.core.features import FeatureView, MaterializeResult, OnlineFeatures
from loopml.data.features import views
from loopml.data.features.online import (
    OnlineRow,
    OnlineStore,
    decode_values,
    encode_entity,
    encode_values,
    is_fresh,
    namespace,
    now_us,
)
from loopml.data.features.views import event_us, view_sql
from loopml.data.sources import materialize as read_source
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import feature_views as view_rows

MAX_READ_ENTITIES = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def newest_per_entity(table: pa.Table, view: FeatureView) -> pa.Table:
    """One row per entity: its newest (rows without a time or a key are left out)."""
    from loopml.data._duckdb import duckdb

    spec = view.spec
    keys = ", ".join(f'"{k}"' for k in spec.entities)
    present = " AND ".join(f'"{c}" IS NOT NULL' for c in [*spec.entities, spec.event_time])
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1GB"})
    try:
        con.register("_rows", table)
        return con.sql(
            f"SELECT * FROM _rows WHERE {present} "  # noqa: S608 - names match COLUMN_PATTERN
            f'QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY "{spec.event_time}" '
            "DESC) = 1"
        ).to_arrow_table()
    finally:
        con.close()


def online_rows(table: pa.Table, view: FeatureView, chunk: int) -> Iterator[list[OnlineRow]]:
    """The store's rows for ``table`` (one per entity), ``chunk`` at a time."""
    spec = view.spec
    for batch in table.to_batches(max_chunksize=chunk):
        rows = []
        for record in batch.to_pylist():
            entity = encode_entity(spec.entities, {k: record[k] for k in spec.entities})
            stamp = event_us(record[spec.event_time])
            values = {f: record[f] for f in spec.features}
            rows.append(OnlineRow(entity, stamp, encode_values(values)))
        yield rows


def _watermark(table: pa.Table, view: FeatureView, before: datetime | None) -> datetime | None:
    if table.num_rows == 0:
        return before
    newest: datetime = max(t for t in table.column(view.spec.event_time).to_pylist() if t)
    newest = newest.replace(tzinfo=UTC) if newest.tzinfo is None else newest
    return newest if before is None or newest > before else before


def materialize(
    store: MetadataStore,
    artifacts: ArtifactStore,
    online: OnlineStore,
    project: str,
    name: str,
    *,
    full: bool = False,
    actor: str,
    chunk_rows: int = 10_000,
) -> MaterializeResult:
    """Write the view's newest values per entity into ``online`` (see the module).

    Raises:
        NotFoundError: no such project, view or source table.
        ValidationError: the source no longer has the view's columns, or fails.
    """
    view = views.get(store, project, name)
    state = view.materialized
    incremental = not full and state is not None and state.version == view.version
    if state is not None and state.version != view.version:
        online.delete_namespace(namespace(project, name))
    after = state.watermark if incremental and state is not None else None
    found = read_source(store, artifacts, project, view_sql(view.spec, after))
    views.check_against(view.spec, found.table.schema)
    newest = newest_per_entity(found.table, view)
    for rows in online_rows(newest, view, chunk_rows):
        online.write_batch(namespace(project, name), rows)
    watermark = _watermark(newest, view, after)
    with store.session() as session:
        view_rows.record_materialized(
            session,
            project,
            name,
            version=view.version,
            watermark=watermark,
            rows=newest.num_rows,
            full=not incremental,
            actor=actor,
        )
    return MaterializeResult(
        view=name,
        version=view.version,
        full=not incremental,
        rows_read=found.table.num_rows,
        entities_written=newest.num_rows,
        watermark=watermark,
    )


def read_online(
    store: MetadataStore,
    online: OnlineStore,
    project: str,
    name: str,
    entities: list[dict[str, Any]],
    *,
    now: int | None = None,
) -> list[OnlineFeatures]:
    """The online values of each entity (a dict of the view's keys), in order; values
    older than the view's TTL at ``now`` (µs since the epoch; the clock by default) are
    ``expired`` and not returned.

    Raises:
        NotFoundError: no such project or view.
        ValidationError: too many entities, or one without exactly the view's keys.
    """
    if not 1 <= len(entities) <= MAX_READ_ENTITIES:
        raise ValidationError(
            f"expected 1 to {MAX_READ_ENTITIES} entities, got {len(entities)}",
            details={"field": "entities"},
        )
    view = views.get(store, project, name)
    keys = [encode_entity(view.spec.entities, e) for e in entities]
    found = online.read_batch(namespace(project, name), keys)
    at = now_us() if now is None else now
    answers = []
    for entity, row in zip(entities, found, strict=True):
        if row is None:
            answers.append(
                OnlineFeatures(entity=entity, event_time=None, values=None, status="missing")
            )
            continue
        fresh = is_fresh(row, view.spec.ttl_s, at)
        answers.append(
            OnlineFeatures(
                entity=entity,
                event_time=_from_us(row.event_us),
                values=decode_values(row.value) if fresh else None,
                status="found" if fresh else "expired",
            )
        )
    return answers


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
