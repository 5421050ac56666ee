"""A table's validation contract (set, show, drop) and the reports its checks left.

Setting a contract checks what can be checked without data: every regex compiles in RE2,
and a ``quarantine`` contract's ``<table>__rejected`` is a valid table name. Bounds that do
not fit a column's type are found by the first append (422, naming the rule).
"""

from __future__ import annotations

from typing import Any

from loopml.core.contracts import Contract, ValidationReport, parse_contract, rejected_table
from loopml.core.errors import NotFoundError
from loopml.core.types import Page
from loopml.data.contracts import check_regex
from loopml.store import MetadataStore, lake_tables, validation_reports


def set_contract(
    store: MetadataStore,
    project: str,
    table: str,
    contract: Contract | dict[str, Any],
    *,
    actor: str,
) -> Contract:
    """Replace ``table``'s contract (emits ``table.contract_updated``).

    Raises:
        ValidationError: an invalid contract, a regex RE2 refuses, or a quarantine contract
            on a table whose ``<table>__rejected`` name would be too long.
        NotFoundError: no such project or table.
    """
    with store.session() as session:
        lake_tables.get(session, project, table)
    parsed = contract if isinstance(contract, Contract) else parse_contract(contract)
    for rule in parsed.columns.values():
        if rule.regex is not None:
            check_regex(rule.regex)
    if parsed.on_fail == "quarantine":
        rejected_table(table)
    with store.session() as session:
        lake_tables.set_contract(
            session, project, table, parsed.model_dump(mode="json", exclude_none=True), actor=actor
        )
    return parsed


def get_contract(store: MetadataStore, project: str, table: str) -> Contract:
    """``table``'s contract.

    Raises:
        NotFoundError: no such project or table, or the table has no contract.
    """
    with store.session() as session:
        found = lake_tables.get(session, project, table)
    if found.contract is None:
        raise NotFoundError(
            f"table {table!r} has no validation contract: set one with "
            f"`loopml tables contract set {table} FILE.yaml`",
            details={"table": table},
        )
    return parse_contract(found.contract)


def delete_contract(store: MetadataStore, project: str, table: str, *, actor: str) -> None:
    """Drop ``table``'s contract (emits ``table.contract_updated``); appends are unchecked.

    Raises:
        NotFoundError: no such project or table, or the table has no contract.
    """
    get_contract(store, project, table)
    with store.session() as session:
        lake_tables.set_contract(session, project, table, None, actor=actor)


def reports(
    store: MetadataStore, project: str, table: str, *, limit: int = 100, cursor: str | None = None
) -> Page[ValidationReport]:
    """``table``'s validation reports, newest first (see ``store.validation_reports``)."""
    with store.session() as session:
        return validation_reports.list_(session, project, table, limit=limit, cursor=cursor)
