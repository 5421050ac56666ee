"""Appends to a table that has a contract: check the batch, then land, reject or quarantine.

The batch is read whole (the contract judges all of it before anything is written), so it
is bounded by the upload limit like any file. ``reject`` writes nothing; ``quarantine``
writes the bad rows to ``<table>__rejected`` first, so a failure between the two commits
never loses them, then the good rows. Every checked batch leaves a report; a failed one
also emits ``validation.failed``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.contracts import REASON_COLUMN, ValidationReport, parse_contract, rejected_table
from loopml.core.errors import ValidationError
from loopml.core.lake import LakeTable, TableCommit, WriteMode
from loopml.data import contracts
from loopml.data.schema import unreadable
from loopml.store import MetadataStore, validation_reports

Write = Callable[[str, pa.Table, WriteMode], TableCommit]
"""Writes rows to a table (created if need be) as one commit, with no contract check."""


def _save(store: MetadataStore, project: str, report: ValidationReport, actor: str) -> None:
    with store.session() as session:
        validation_reports.add(session, project, report, actor=actor)


def _summary(report: ValidationReport) -> str:
    shown = "; ".join(f.message + f" ({f.count} rows)" for f in report.failures[:3])
    more = len(report.failures) - 3
    return shown + (f"; and {more} more rules" if more > 0 else "")


def ingest(
    store: MetadataStore,
    row: LakeTable,
    data: pa.Table | pa.RecordBatchReader,
    *,
    mode: WriteMode,
    actor: str,
    write: Write,
    existing: contracts.ExistingValues,
) -> TableCommit:
    """Check ``data`` against ``row``'s contract, then write what the contract lets through.

    Raises:
        ValidationError: the batch failed a ``reject`` contract (``details.report`` is the
            report), or the contract does not fit the data.
    """
    contract = parse_contract(row.contract)
    try:
        batch = (data if isinstance(data, pa.Table) else data.read_all()).combine_chunks()
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise unreadable(exc) from exc
    append = mode == "append"
    report, good, reason = contracts.check(
        contract,
        batch,
        existing_row_count=row.row_count if append else 0,
        existing=existing if append else None,
        table=row.name,
    )
    if report.passed:
        commit = write(row.name, batch, mode)
        _save(store, row.project, report.model_copy(update={"version": commit.version}), actor)
        return commit
    if contract.on_fail == "reject":
        _save(store, row.project, report, actor)
        raise ValidationError(
            f"the batch failed the contract of table {row.name!r}, so nothing was written: "
            f"{report.rows_failed} of {report.rows_checked} rows failed: {_summary(report)}",
            details={"report": report.model_dump(mode="json")},
        )
    bad = pc.invert(good)
    rejected = batch.filter(bad).append_column(REASON_COLUMN, reason.filter(bad))
    quarantined = write(rejected_table(row.name), rejected, "append")
    commit = write(row.name, batch.filter(good), mode)
    update = {"version": commit.version, "rejected_version": quarantined.version}
    _save(store, row.project, report.model_copy(update=update), actor)
    return commit
