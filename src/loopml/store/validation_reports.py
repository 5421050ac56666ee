"""Validation reports: stored and listed, newest first, per table.

A report is written in the same transaction as its ``validation.failed`` event, so the
event never names a report that is not there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from loopml.core.contracts import ValidationReport
from loopml.core.errors import ValidationError
from loopml.core.types import Page
from loopml.store import events, lake_tables
from loopml.store._checks import check_actor, check_limit
from loopml.store.orm import LakeTableRow, ValidationReportRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _table_row(session: Session, project: str, table: str) -> LakeTableRow:
    found = lake_tables.get(session, project, table)
    row = session.get(LakeTableRow, found.id)
    assert row is not None, "the table was just found"
    return row


# A cursor carries the last report's time and id, so any well-formed one is a valid
# position (a deleted report's too): "<microseconds since the epoch>-<id>".
CURSOR_PATTERN = re.compile(r"^[0-9]{1,17}-[0-9a-f]{32}$")


def _cursor(row: ValidationReportRow) -> str:
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{row.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    if not CURSOR_PATTERN.fullmatch(cursor):
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor", "pattern": CURSOR_PATTERN.pattern},
        )
    micros, last_id = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), last_id


def add(
    session: Session, project: str, report: ValidationReport, *, actor: str
) -> ValidationReport:
    """Store ``report``; a failed one also appends ``validation.failed``.

    Raises:
        NotFoundError: no such project or table.
    """
    check_actor(actor)
    table = _table_row(session, project, report.table)
    session.add(
        ValidationReportRow(
            id=report.id,
            project_id=table.project_id,
            table_id=table.id,
            version=report.version,
            passed=report.passed,
            rows_checked=report.rows_checked,
            rows_failed=report.rows_failed,
            report=report.model_dump(mode="json"),
            created_at=report.created_at,
        )
    )
    session.flush()
    if not report.passed:
        payload = {
            "report": report.id,
            "on_fail": report.on_fail,
            "rows_checked": report.rows_checked,
            "rows_failed": report.rows_failed,
            "version": report.version,
            "rejected_version": report.rejected_version,
            "rules": sorted({f.rule for f in report.failures}),
        }
        events.append(
            session,
            type="validation.failed",
            subject=report.table,
            project=project,
            payload=payload,
            actor=actor,
        )
    return report


def list_(
    session: Session, project: str, table: str, *, limit: int = 100, cursor: str | None = None
) -> Page[ValidationReport]:
    """A table's reports, newest first, ``limit`` (1 to 1000) at a time.

    Raises:
        NotFoundError: no such project or table.
        ValidationError: a bad ``limit`` or ``cursor``.
    """
    check_limit(limit)
    table_id = _table_row(session, project, table).id
    order = (ValidationReportRow.created_at.desc(), ValidationReportRow.id.desc())
    query = select(ValidationReportRow).where(ValidationReportRow.table_id == table_id)
    if cursor is not None:
        at, last_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                ValidationReportRow.created_at < at,
                and_(ValidationReportRow.created_at == at, ValidationReportRow.id < last_id),
            )
        )
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    items = [ValidationReport.model_validate(r.report) for r in rows[:limit]]
    next_cursor = _cursor(rows[limit - 1]) if len(rows) > limit else None
    return Page[ValidationReport](items=items, next_cursor=next_cursor)
