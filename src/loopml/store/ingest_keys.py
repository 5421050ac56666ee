"""Idempotency keys of record posts, per table.

A key is reserved (``version`` -1) before its post is committed, and given the version that
holds the post in the transaction that records the commit. The Delta commit carries its keys
too (see ``loopml.data._delta``), so a reservation whose commit landed but was never recorded
is completed when the table is reconciled. One whose commit never happened is released by
the writer, or, if the writer died, taken over by the next post of the key once its lease
has run out.

Every function locks or reads the table's row first: on PostgreSQL the lock serializes the
writers of one table, on SQLite every write transaction is serialized anyway.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError
from loopml.core.ingest import RESERVED, IngestKey
from loopml.store import lake_tables
from loopml.store._errors import add_unique
from loopml.store.orm import IngestKeyRow, LakeTableRow


def _to_domain(row: IngestKeyRow) -> IngestKey:
    return IngestKey(key=row.key, body_sha256=row.body_sha256, rows=row.rows, version=row.version)


def _rows(session: Session, table_id: str, keys: Collection[str]) -> dict[str, IngestKeyRow]:
    if not keys:
        return {}
    query = select(IngestKeyRow).where(
        IngestKeyRow.table_id == table_id, IngestKeyRow.key.in_(sorted(set(keys)))
    )
    return {row.key: row for row in session.scalars(query)}


def _insert(session: Session, table: LakeTableRow, keys: Sequence[IngestKey]) -> None:
    if not keys:
        return
    for key in keys[:-1]:
        session.add(_new_row(table, key))
    taken = ConflictError(
        "an Idempotency-Key of this post was taken by a concurrent post; retry",
        details={"keys": [k.key for k in keys][:20], "retryable": True},
    )
    add_unique(session, _new_row(table, keys[-1]), taken)  # flushes them all


def _new_row(table: LakeTableRow, key: IngestKey) -> IngestKeyRow:
    return IngestKeyRow(
        project_id=table.project_id,
        table_id=table.id,
        key=key.key,
        body_sha256=key.body_sha256,
        version=key.version,
        rows=key.rows,
    )


def find(session: Session, project: str, table: str, keys: Collection[str]) -> dict[str, IngestKey]:
    """The recorded state of those of ``keys`` the table knows, by key.

    Raises:
        NotFoundError: no such project or table.
    """
    table_id = lake_tables.get(session, project, table, pending=True).id
    return {key: _to_domain(row) for key, row in _rows(session, table_id, keys).items()}


def claim(
    session: Session, project: str, table: str, wanted: Sequence[IngestKey], *, lease_s: float
) -> dict[str, IngestKey]:
    """Reserve the keys of posts about to be committed to ``table``.

    A key nobody holds is reserved, and so is one whose reservation is older than
    ``lease_s`` (its writer died before committing: the caller reconciled the table first,
    so a commit carrying the key would have completed the reservation).

    Returns:
        The keys that were not reserved, as recorded: landed ones, and ones another writer
        reserved less than ``lease_s`` ago. Every other key of ``wanted`` is now reserved.

    Raises:
        NotFoundError: no such project or table.
        ConflictError: a concurrent writer inserted one of the keys first; retry.
    """
    table_row = lake_tables.locked_row(session, project, table)
    found = _rows(session, table_row.id, [w.key for w in wanted])
    stale = utcnow() - timedelta(seconds=lease_s)
    held: dict[str, IngestKey] = {}
    new: list[IngestKey] = []
    for want in wanted:
        have = found.get(want.key)
        if have is None:
            new.append(want.model_copy(update={"version": RESERVED}))
        elif have.version == RESERVED and have.updated_at < stale:
            have.body_sha256, have.rows, have.updated_at = want.body_sha256, want.rows, utcnow()
        else:
            held[want.key] = _to_domain(have)
    _insert(session, table_row, new)
    session.flush()
    return held


def record(session: Session, project: str, table: str, landed: Sequence[IngestKey]) -> None:
    """Record the versions that hold ``landed`` keys' posts, reserved or not.

    Called in the transaction that records the commit (or reconciles it after a crash).
    A key already recorded as landed keeps its first version.
    """
    if not landed:
        return
    unique: dict[str, IngestKey] = {}
    for key in landed:
        unique.setdefault(key.key, key)
    table_row = lake_tables.locked_row(session, project, table)
    found = _rows(session, table_row.id, unique)
    for key in unique.values():
        have = found.get(key.key)
        if have is not None and have.version == RESERVED:
            have.version, have.rows, have.body_sha256 = key.version, key.rows, key.body_sha256
    _insert(session, table_row, [k for k in unique.values() if k.key not in found])
    session.flush()


def release(session: Session, project: str, table: str, keys: Collection[str]) -> int:
    """Drop the reservations of ``keys`` whose posts did not land; returns how many.

    Landed keys are kept: call this after reconciling the table, so that a commit which
    did land (and failed only to be recorded) is never taken for one that did not.
    """
    if not keys:
        return 0
    table_id = lake_tables.get(session, project, table, pending=True).id
    result = session.execute(
        delete(IngestKeyRow).where(
            IngestKeyRow.table_id == table_id,
            IngestKeyRow.key.in_(sorted(set(keys))),
            IngestKeyRow.version == RESERVED,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
